// attend_scores / attend_values against double-precision sums on every Highway target the CPU
// runs, at head counts, row counts and lengths with remainders against every block size.
#include "backends/cpu/attend_kernels.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "backends/cpu/test_weights.h"
#include "base/dtype.h"

namespace dsv3 {
namespace {

using testing::double_sum;
using testing::for_each_target;
using testing::random_vector;

// got against Σ_k term(k) for k < K in double, within f32 accumulation error of a length-K dot:
// K · 2^-24 · Σ|terms| (x4).
// Cache rows as the paged cache hands them over: runs of up to 3 consecutive rows, each run in a
// buffer of its own (so runs are neither adjacent nor in order in memory), f32 or BF16. `c` (the
// logical rows, m x stride) is rounded to BF16 in place for a BF16 case so that the double sums
// see the values the kernel reads.
struct Rows {
  std::vector<std::vector<float>> f32;
  std::vector<std::vector<uint16_t>> bf16;
  std::vector<cpu::RowRun> runs;
};
Rows rows_of(std::vector<float>& c, int64_t m, int64_t stride, CacheDtype dt) {
  Rows r;
  if (dt == CacheDtype::BF16)
    for (auto& x : c) x = bf16_to_f32(f32_to_bf16(x));
  for (int64_t j = 0; j < m; j += 3) {
    const int64_t n = std::min<int64_t>(3, m - j);
    const float* src = c.data() + j * stride;
    if (dt == CacheDtype::F32) {
      r.f32.emplace_back(src, src + n * stride);
    } else {
      r.bf16.emplace_back();
      for (int64_t k = 0; k < n * stride; ++k) r.bf16.back().push_back(f32_to_bf16(src[k]));
    }
    r.runs.push_back({nullptr, n});
  }
  for (size_t i = 0; i < r.runs.size(); ++i)
    r.runs[i].first = dt == CacheDtype::F32 ? static_cast<const void*>(r.f32[i].data()) : r.bf16[i].data();
  return r;
}

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
          for (CacheDtype dt : {CacheDtype::F32, CacheDtype::BF16}) {
            auto c = random_vector(m * stride, uint32_t(m + 7));
            const Rows rows = rows_of(c, m, stride, dt);
            std::vector<float> s(size_t(nq * ld), NAN);
            cpu::attend_scores(q.data(), nq, k_len, rows.runs.data(), int64_t(rows.runs.size()), stride, dt, 0.25f,
                               s.data(), ld);
            for (int64_t h = 0; h < nq; ++h)
              for (int64_t j = 0; j < m; ++j)
                expect_dot(
                    s[size_t(h * ld + j)], k_len,
                    [&](int64_t k) { return double(q[size_t(h * k_len + k)]) * c[size_t(j * stride + k)]; },
                    0.25,
                    std::string(cache_dtype_name(dt)) + " nq " + std::to_string(nq) + " k " + std::to_string(k_len) +
                        " m " + std::to_string(m) + " at " + std::to_string(h) + "," + std::to_string(j));
          }
        }
  });
}

// A score's bits do not depend on the heads and rows it is computed with (blocks of 4 heads x 4
// rows, their tails one head or one row at a time): each head alone against each row alone gives
// the same bits as 9 heads against 7 rows together, on every target.
TEST(AttendKernels, ScoresKeepTheirBitsWhateverTheGrouping) {
  for_each_target([] {
    for (int64_t k_len : {37, 576}) {
      const int64_t nq = 9, m = 7, stride = k_len + 3;
      auto q = random_vector(nq * k_len, uint32_t(k_len));
      for (CacheDtype dt : {CacheDtype::F32, CacheDtype::BF16}) {
        auto c = random_vector(m * stride, uint32_t(m + k_len));
        // One run of all m rows (blocks of 4 rows; rows_of's runs of at most 3 never make one).
        rows_of(c, m, stride, dt);  // rounds c to BF16 in place for a BF16 case
        std::vector<float> f32(c.begin(), c.begin() + m * stride);
        std::vector<uint16_t> bf16;
        for (float x : f32) bf16.push_back(f32_to_bf16(x));
        const cpu::RowRun run{dt == CacheDtype::F32 ? static_cast<const void*>(f32.data()) : bf16.data(), m};
        std::vector<float> all(size_t(nq * m));
        cpu::attend_scores(q.data(), nq, k_len, &run, 1, stride, dt, 0.25f, all.data(), m);
        for (int64_t h = 0; h < nq; ++h)
          for (int64_t j = 0; j < m; ++j) {
            auto c1 = std::vector<float>(c.begin() + j * stride, c.begin() + (j + 1) * stride);
            const Rows one = rows_of(c1, 1, stride, dt);
            float s1 = NAN;
            cpu::attend_scores(q.data() + h * k_len, 1, k_len, one.runs.data(), 1, stride, dt, 0.25f, &s1, 1);
            ASSERT_EQ(f32_to_bits(s1), f32_to_bits(all[size_t(h * m + j)]))
                << cache_dtype_name(dt) << " k " << k_len << " head " << h << " row " << j;
          }
      }
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
          for (CacheDtype dt : {CacheDtype::F32, CacheDtype::BF16}) {
            auto c = random_vector(m * stride, uint32_t(len + 11));
            const Rows rows = rows_of(c, m, stride, dt);
            std::vector<float> o(size_t(nq * len), NAN);
            cpu::attend_values(p.data(), nq, ld, rows.runs.data(), int64_t(rows.runs.size()), stride, dt, len,
                               o.data());
            for (int64_t h = 0; h < nq; ++h)
              for (int64_t k = 0; k < len; ++k)
                expect_dot(
                    o[size_t(h * len + k)], m,
                    [&](int64_t j) { return double(p[size_t(h * ld + j)]) * c[size_t(j * stride + k)]; },
                    1.0,
                    std::string(cache_dtype_name(dt)) + " nq " + std::to_string(nq) + " len " + std::to_string(len) +
                        " m " + std::to_string(m) + " at " + std::to_string(h) + "," + std::to_string(k));
          }
        }
  });
}

// exp_shifted against std::exp in double: each numerator within 2 ulp of exp(float(r - max)), the max
// returned exactly, the sum that of the numerators; rows with a vector tail, scores far below
// the max (numerators that underflow to 0) and every score equal.
TEST(AttendKernels, ExpShiftedMatchesExp) {
  for_each_target([] {
    for (int64_t len : {1, 2, 7, 16, 17, 33, 128})
      for (float spread : {0.0f, 1.0f, 30.0f, 1e30f}) {
        std::vector<float> r = random_vector(len, uint32_t(len), spread), in = r;
        if (len > 2) in[1] = r[1] = -3e38f;
        const float mx = *std::max_element(in.begin(), in.end());
        double sum = -1;
        ASSERT_EQ(cpu::exp_shifted(r.data(), len, sum), mx);
        double want_sum = 0;
        for (int64_t t = 0; t < len; ++t) {
          const double want = std::exp(double(in[size_t(t)] - mx));  // the difference rounded to f32, as the old code had it
          const double ulp = std::ldexp(1.0, std::max(std::ilogb(float(want)), -126) - 23);
          ASSERT_NEAR(r[size_t(t)], want, want < 1e-37 ? 1e-37 : 2 * ulp)
              << "len " << len << " spread " << spread << " at " << t << " of x - max = " << in[size_t(t)] - mx;
          want_sum += r[size_t(t)];
        }
        EXPECT_EQ(sum, want_sum) << len;
      }
  });
}

}  // namespace
}  // namespace dsv3
