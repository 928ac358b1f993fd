// attend_scores / attend_values against double-precision sums on every Highway target the CPU
// runs, at head counts, row counts and lengths with remainders against every block size.
#include "backends/cpu/attend_kernels.h"

#include <gtest/gtest.h>

#include <cmath>

#include "backends/cpu/test_weights.h"

namespace dsv3 {
namespace {

using testing::double_sum;
using testing::for_each_target;
using testing::random_vector;

// got against Σ_k term(k) for k < K in double, within f32 accumulation error of a length-K dot:
// K · 2^-24 · Σ|terms| (x4).
template <class F>
void expect_dot(float got, int64_t K, F term, double scale, const std::string& what) {
  const auto d = double_sum(K, term);
  ASSERT_NEAR(got, scale * d.sum, 4.0 * double(K) * 0x1p-24 * scale * d.abs_sum + 1e-30) << what;
}

TEST(AttendKernels, ScoresMatchDoubleSums) {
  for_each_target([] {
    for (int64_t nq : {1, 3, 4, 9, 16})
      for (int64_t k_len : {7, 37, 576})
        for (int64_t m : {1, 5, 17}) {
          const int64_t stride = k_len + 3, ld = m + 2;  // strides wider than the data
          auto q = random_vector(nq * k_len, uint32_t(nq + k_len));
          auto c = random_vector(m * stride, uint32_t(m + 7));
          std::vector<float> s(size_t(nq * ld), NAN);
          cpu::attend_scores(q.data(), nq, k_len, c.data(), stride, m, 0.25f, s.data(), ld);
          for (int64_t h = 0; h < nq; ++h)
            for (int64_t j = 0; j < m; ++j)
              expect_dot(
                  s[size_t(h * ld + j)], k_len,
                  [&](int64_t k) { return double(q[size_t(h * k_len + k)]) * c[size_t(j * stride + k)]; }, 0.25,
                  "nq " + std::to_string(nq) + " k " + std::to_string(k_len) + " m " + std::to_string(m) + " at " +
                      std::to_string(h) + "," + std::to_string(j));
        }
  });
}

TEST(AttendKernels, ValuesMatchDoubleSums) {
  for_each_target([] {
    for (int64_t nq : {1, 2, 3, 7, 8, 9, 16})
      for (int64_t len : {5, 33, 160, 512})
        for (int64_t m : {1, 6, 40}) {
          const int64_t stride = len + 64 + 5, ld = m + 1;
          auto p = random_vector(nq * ld, uint32_t(nq + m));
          auto c = random_vector(m * stride, uint32_t(len + 11));
          std::vector<float> o(size_t(nq * len), NAN);
          cpu::attend_values(p.data(), nq, ld, c.data(), stride, m, len, o.data());
          for (int64_t h = 0; h < nq; ++h)
            for (int64_t k = 0; k < len; ++k)
              expect_dot(
                  o[size_t(h * len + k)], m,
                  [&](int64_t j) { return double(p[size_t(h * ld + j)]) * c[size_t(j * stride + k)]; }, 1.0,
                  "nq " + std::to_string(nq) + " len " + std::to_string(len) + " m " + std::to_string(m) + " at " +
                      std::to_string(h) + "," + std::to_string(k));
        }
  });
}

}  // namespace
}  // namespace dsv3
