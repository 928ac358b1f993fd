// The kernels over compressed-tensors packed integer weights (packed_int-inl.h), on every Highway
// target this CPU runs: dequant_rows equals the scalar reference bit for bit; matvec_rows gives the
// bits of the F32 kernel over the dequantised weight (the same summation order, dot_order-inl.h) and
// is within kernels_test.cpp's f32 accumulation bound of a double product; the GEMM gives each
// token the bits of matvec_rows alone. Shapes with partial words, partial last groups, SIMD
// remainders, and rows of several 2048-column segments; group sizes 32 and 128 (and 8, below one
// SIMD vector on AVX-512, which takes the scalar route there; 16, a group per AVX-512 vector; 48,
// whose groups straddle the 2048-column segments).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "backends/cpu/gemm.h"
#include "backends/cpu/kernels.h"
#include "backends/cpu/test_weights.h"
#include "ops/reference/reference.h"

namespace dsv3 {
namespace {

using testing::double_sum;
using testing::for_each_target;
using testing::random_packed_weight;
using testing::random_vector;

struct Case {
  int bits;
  int64_t group_size, rows, cols;
};
const Case kCases[] = {{4, 32, 1, 32},    {4, 32, 7, 96},     {4, 32, 129, 300}, {4, 128, 13, 2100}, {4, 32, 5, 4500},
                       {4, 128, 3, 127},  {4, 8, 9, 61},      {8, 32, 7, 96},    {8, 128, 13, 2100}, {8, 32, 3, 33},
                       {4, 16, 3, 2080},  {4, 48, 5, 4800}};

std::string name(const Case& k) {
  return "int" + std::to_string(k.bits) + " g" + std::to_string(k.group_size) + " " + std::to_string(k.rows) + "x" +
         std::to_string(k.cols);
}

// The weight dequantised by the reference, as an F32 weight.
std::vector<float> dequantised(const Weight& w) {
  std::vector<float> f(size_t(w.rows * w.cols));
  for (int64_t r = 0; r < w.rows; ++r) ref::dequant_row(w, r, f.data() + r * w.cols);
  return f;
}
Weight f32_view(const Weight& w, const std::vector<float>& f) {
  Weight v;
  v.name = w.name;
  v.dtype = DType::F32;
  v.rows = w.rows, v.cols = w.cols;
  v.data = f.data();
  return v;
}

TEST(CpuPackedKernels, DequantRowsMatchesReferenceExactly) {
  for_each_target([] {
    for (const Case& k : kCases) {
      auto w = random_packed_weight(k.bits, k.rows, k.cols, k.group_size, uint32_t(k.rows * 31 + k.cols));
      const int64_t ld = cpu::padded_stride(k.cols);
      std::vector<float> got(size_t(k.rows * ld));
      cpu::dequant_rows(w->w, 0, k.rows, got.data(), ld);
      const auto want = dequantised(w->w);
      for (int64_t r = 0; r < k.rows; ++r)
        for (int64_t c = 0; c < k.cols; ++c)
          ASSERT_EQ(f32_to_bits(got[size_t(r * ld + c)]), f32_to_bits(want[size_t(r * k.cols + c)]))
              << name(k) << " " << r << "," << c;
    }
  });
}

TEST(CpuPackedKernels, MatvecRowsEqualsF32KernelOnDequantisedWeights) {
  for_each_target([] {
    for (const Case& k : kCases)
      for (int64_t n : {1, 2, 3, 4, 5, 9}) {
        SCOPED_TRACE(name(k) + " n=" + std::to_string(n));
        auto w = random_packed_weight(k.bits, k.rows, k.cols, k.group_size, uint32_t(k.rows + k.cols * 7));
        const auto f = dequantised(w->w);
        const Weight fw = f32_view(w->w, f);
        const int64_t xs = k.cols + 3, ys = k.rows + 2, r0 = k.rows / 3;
        const auto x = random_vector(n * xs, uint32_t(n));
        std::vector<float> y(size_t(n * ys), NAN), yf(size_t(n * ys), NAN);
        cpu::matvec_rows(w->w, r0, k.rows, x.data(), n, xs, y.data(), ys);
        cpu::matvec_rows(fw, r0, k.rows, x.data(), n, xs, yf.data(), ys);
        for (int64_t i = 0; i < n; ++i)
          for (int64_t r = r0; r < k.rows; ++r) {
            const float got = y[size_t(i * ys + r - r0)];
            ASSERT_EQ(f32_to_bits(got), f32_to_bits(yf[size_t(i * ys + r - r0)])) << "r=" << r << " i=" << i;
            const auto d = double_sum(k.cols, [&](int64_t c) { return double(f[size_t(r * k.cols + c)]) * x[size_t(i * xs + c)]; });
            ASSERT_NEAR(got, d.sum, 2.0 * double(k.cols) * std::ldexp(1.0, -24) * d.abs_sum + 1e-30) << "r=" << r;
          }
      }
  });
}

TEST(CpuPackedKernels, GemmEqualsMatvecAloneBitForBit) {
  for_each_target([] {
    for (const Case& k : kCases)
      for (int64_t n : {1, 16, 17, 33}) {
        SCOPED_TRACE(name(k) + " n=" + std::to_string(n));
        auto w = random_packed_weight(k.bits, k.rows, k.cols, k.group_size, uint32_t(k.rows * 7 + k.cols));
        const Weight& pw = w->w;
        const int64_t x_stride = k.cols + 3;
        const auto x = random_vector(n * x_stride, uint32_t(n + 100), 3.0f);
        std::vector<float> xp(size_t(cpu::gemm_packed_floats(pw, n)), std::numeric_limits<float>::quiet_NaN());
        std::vector<double> unscale(size_t(cpu::gemm_unscale_count(pw, n)), 1.0);
        cpu::gemm_pack(pw, x.data(), n, x_stride, 0, cpu::gemm_panels(n), xp.data(), unscale.data());
        std::vector<float> scratch(size_t(cpu::gemm_scratch_floats(pw)), std::numeric_limits<float>::quiet_NaN());
        std::vector<float> y(size_t(n * k.rows), NAN), alone(size_t(k.rows));
        cpu::gemm_rows(pw, 0, k.rows, xp.data(), unscale.data(), n, y.data(), k.rows, scratch.data());
        for (int64_t t = 0; t < n; ++t) {
          cpu::matvec_rows(pw, 0, k.rows, x.data() + t * x_stride, 1, x_stride, alone.data(), 0);
          for (int64_t r = 0; r < k.rows; ++r)
            ASSERT_EQ(f32_to_bits(y[size_t(t * k.rows + r)]), f32_to_bits(alone[size_t(r)])) << "t=" << t << " r=" << r;
        }
      }
  });
}

}  // namespace
}  // namespace dsv3
