// gemm.h on every Highway target this CPU runs, for every weight format: against a double-precision
// product (tolerance as in kernels_test.cpp: f32 accumulation of K products errs by at most about
// K · 2^-24 · Σ|x w|), and bit for bit against matvec_rows of each token alone (both follow
// dot_order-inl.h's order). Token counts around the panel widths (1 .. 70: one and two vectors,
// partial panels), row bands around the register block and the 128-row scale blocks, columns with
// SIMD and group remainders and several segments.
#include "backends/cpu/gemm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "backends/cpu/kernels.h"
#include "backends/cpu/test_weights.h"
#include "ops/reference/reference.h"

namespace dsv3 {
namespace {

using testing::double_sum;
using testing::for_each_target;
using testing::random_vector;
using testing::random_weight;

// y [n, r1 - r0] (row stride y_stride) for x [n, w.cols] (row stride x_stride), packed in two calls
// and computed in two row bands, as callers splitting over threads would.
std::vector<float> gemm(const Weight& w, int64_t r0, int64_t r1, const std::vector<float>& x, int64_t n,
                        int64_t x_stride, int64_t y_stride, float fill) {
  std::vector<float> xp(size_t(cpu::gemm_packed_floats(w, n)), std::numeric_limits<float>::quiet_NaN());
  std::vector<double> unscale(size_t(cpu::gemm_unscale_count(w, n)), std::numeric_limits<double>::quiet_NaN());
  const int64_t panels = cpu::gemm_panels(n);
  cpu::gemm_pack(w, x.data(), n, x_stride, panels / 2, panels, xp.data(), unscale.data());
  cpu::gemm_pack(w, x.data(), n, x_stride, 0, panels / 2, xp.data(), unscale.data());
  std::vector<float> scratch(size_t(cpu::gemm_scratch_floats(w)), std::numeric_limits<float>::quiet_NaN());
  std::vector<float> y(size_t(n * y_stride), fill);
  const int64_t mid = std::min(r1, r0 + cpu::gemm_tile_rows(w));
  cpu::gemm_rows(w, mid, r1, xp.data(), unscale.data(), n, y.data() + (mid - r0), y_stride, scratch.data());
  cpu::gemm_rows(w, r0, mid, xp.data(), unscale.data(), n, y.data(), y_stride, scratch.data());
  return y;
}

TEST(CpuGemm, MatchesDoubleProductAndMatvecBitForBit) {
  const DType dtypes[] = {DType::F8_E4M3, DType::BF16, DType::F16, DType::F32};
  const std::pair<int64_t, int64_t> shapes[] = {{1, 1},     {5, 7},      {13, 128}, {37, 300},
                                                {300, 129}, {130, 2100}, {20, 4500}};
  for_each_target([&] {
    for (DType dt : dtypes)
      for (auto [rows, cols] : shapes)
        for (int64_t n : {1, 3, 8, 15, 16, 17, 31, 32, 33, 48, 70}) {
          if (rows * cols * n > 20'000'000) continue;
          SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " " << rows << "x" << cols << " n=" << n);
          auto w = random_weight(dt, rows, cols, uint32_t(rows * 7 + cols));
          const int64_t r0 = rows / 3, x_stride = cols + 3, y_stride = rows - r0 + 2;
          const auto x = random_vector(n * x_stride, uint32_t(n + 100), 3.0f);
          const float sentinel = -12345.0f;
          const auto y = gemm(w->w, r0, rows, x, n, x_stride, y_stride, sentinel);
          std::vector<float> row(static_cast<size_t>(cols)), alone(static_cast<size_t>(rows));
          for (int64_t t = 0; t < n; ++t) {
            cpu::matvec_rows(w->w, r0, rows, x.data() + t * x_stride, 1, x_stride, alone.data(), 0);
            for (int64_t r = r0; r < rows; ++r) {
              ref::dequant_row(w->w, r, row.data());
              const auto d = double_sum(
                  cols, [&](int64_t c) { return double(row[size_t(c)]) * x[size_t(t * x_stride + c)]; });
              const float got = y[size_t(t * y_stride + r - r0)];
              ASSERT_NEAR(got, d.sum, 2.0 * double(cols) * std::ldexp(1.0, -24) * d.abs_sum) << "t=" << t << " r=" << r;
              ASSERT_EQ(std::memcmp(&got, &alone[size_t(r - r0)], sizeof(float)), 0)
                  << "t=" << t << " r=" << r << ": gemm " << got << ", matvec alone " << alone[size_t(r - r0)];
            }
            for (int64_t r = rows; r < r0 + y_stride; ++r)
              ASSERT_EQ(y[size_t(t * y_stride + r - r0)], sentinel) << "t=" << t;
          }
        }
  });
}

}  // namespace
}  // namespace dsv3
