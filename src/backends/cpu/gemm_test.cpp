// gemm.h against a double-precision product, on every Highway target this CPU runs: token counts
// around the panel widths (1 .. 70: one and two vectors, partial panels), rows around the register
// block (1 .. 37), columns with and without SIMD remainders. Tolerance as in kernels_test.cpp:
// f32 accumulation of K products errs by at most about K · 2^-24 · Σ|x w|.
#include "backends/cpu/gemm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "backends/cpu/test_weights.h"

namespace dsv3 {
namespace {

using testing::double_sum;
using testing::for_each_target;
using testing::random_vector;

// Packs x in two calls (panels split at half) as a caller splitting over threads would.
std::vector<float> pack(const std::vector<float>& x, int64_t n, int64_t cols) {
  std::vector<float> xp(size_t(cpu::gemm_packed_floats(n, cols)), std::numeric_limits<float>::quiet_NaN());
  const int64_t panels = cpu::gemm_panels(n);
  cpu::gemm_pack_panels(x.data(), n, cols, panels / 2, panels, xp.data());
  cpu::gemm_pack_panels(x.data(), n, cols, 0, panels / 2, xp.data());
  return xp;
}

TEST(CpuGemm, TileMatchesDoubleProduct) {
  for_each_target([] {
    for (int64_t cols : {1, 7, 128, 300})
      for (int64_t rows : {1, 5, 12, 13, 25, 37})
        for (int64_t n : {1, 3, 8, 15, 16, 17, 31, 32, 33, 48, 70}) {
          SCOPED_TRACE(::testing::Message() << rows << "x" << cols << " n=" << n);
          const int64_t ld = cols + 5, y_stride = rows + 3;
          const int64_t padded = (rows + cpu::kGemmRowBlock - 1) / cpu::kGemmRowBlock * cpu::kGemmRowBlock;
          // Spare rows of the last register block are NaN: they must not reach any output.
          std::vector<float> tile(size_t(padded * ld), std::numeric_limits<float>::quiet_NaN());
          const auto w = random_vector(rows * cols, uint32_t(rows * 7 + cols));
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = 0; c < cols; ++c) tile[size_t(r * ld + c)] = w[size_t(r * cols + c)];
          const auto x = random_vector(n * cols, uint32_t(n + 100), 3.0f);
          const auto xp = pack(x, n, cols);
          const float sentinel = -12345.0f;
          std::vector<float> y(size_t(n * y_stride), sentinel);
          cpu::gemm_tile(tile.data(), ld, rows, xp.data(), n, cols, y.data(), y_stride);
          for (int64_t t = 0; t < n; ++t) {
            for (int64_t r = 0; r < rows; ++r) {
              const auto d = double_sum(
                  cols, [&](int64_t c) { return double(w[size_t(r * cols + c)]) * x[size_t(t * cols + c)]; });
              ASSERT_NEAR(y[size_t(t * y_stride + r)], d.sum, 2.0 * double(cols) * std::ldexp(1.0, -24) * d.abs_sum)
                  << "t=" << t << " r=" << r;
            }
            for (int64_t r = rows; r < y_stride; ++r) ASSERT_EQ(y[size_t(t * y_stride + r)], sentinel) << "t=" << t;
          }
        }
  });
}

}  // namespace
}  // namespace dsv3
