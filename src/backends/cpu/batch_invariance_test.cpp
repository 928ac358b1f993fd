// Batch invariance of the CPU backend's ops, bit for bit: a token's output is the same computed
// alone (n = 1: the one-token decode kernels) and inside calls of 2 .. 70 tokens (the 2-4-token
// kernels, and from kGemmMinTokens the GEMM), for every weight format, at shapes with several
// column segments and remainders, on every Highway target this CPU runs, at 1 and 2 threads
// (each compared with itself). tests/batch_test.cpp checks the whole model on the goldens.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/test_weights.h"

namespace dsv3 {
namespace {

using testing::for_each_target;
using testing::random_vector;
using testing::random_weight;

// Row `row` of got [.., width] against row `want_row` of want, bit for bit.
void expect_same_row(const std::vector<float>& got, int64_t row, const std::vector<float>& want, int64_t want_row,
                     int64_t width, const std::string& what) {
  const float* a = got.data() + row * width;
  const float* b = want.data() + want_row * width;
  if (std::memcmp(a, b, size_t(width) * sizeof(float)) == 0) return;
  int64_t c = 0;
  while (std::memcmp(a + c, b + c, sizeof(float)) == 0) ++c;
  ADD_FAILURE() << what << ": column " << c << " is " << a[c] << " in the batch, " << b[c] << " alone";
}

class BatchInvarianceTest : public ::testing::TestWithParam<int> {};

TEST_P(BatchInvarianceTest, LinearTokenAloneEqualsInsideBatches) {
  ThreadPool pool(GetParam());
  CpuBackend cpu(pool);
  const std::pair<int64_t, int64_t> shapes[] = {{300, 2500}, {130, 129}, {37, 4200}};
  for_each_target([&] {
    for (DType dt : {DType::F8_E4M3, DType::BF16, DType::F16, DType::F32})
      for (auto [rows, cols] : shapes) {
        auto w = random_weight(dt, rows, cols, uint32_t(rows + cols));
        const int64_t n_max = 40;
        auto x = random_vector(n_max * cols, 5, 2.0f);
        std::vector<float> alone(size_t(n_max * rows));
        for (int64_t t = 0; t < n_max; ++t) cpu.linear(w->w, x.data() + t * cols, 1, alone.data() + t * rows);
        for (int64_t n : {2, 3, 4, 5, 8, 15, 16, 17, 33, 40}) {
          // Tokens [n_max - n, n_max): each batch starts at a different token.
          std::vector<float> y(size_t(n * rows));
          cpu.linear(w->w, x.data() + (n_max - n) * cols, n, y.data());
          for (int64_t t = 0; t < n; ++t)
            expect_same_row(y, t, alone, n_max - n + t, rows,
                            std::string(dtype_name(dt)) + " " + std::to_string(rows) + "x" + std::to_string(cols) +
                                " token " + std::to_string(t) + " of " + std::to_string(n));
        }
      }
  });
}

TEST_P(BatchInvarianceTest, MoeTokenAloneEqualsInsideBatches) {
  ThreadPool pool(GetParam());
  CpuBackend cpu(pool);
  const int64_t E = 6, H = 300, inter = 136, K = 2;
  for (DType dt : {DType::F8_E4M3, DType::BF16}) {
    std::vector<std::unique_ptr<testing::OwnedWeight>> owned;
    uint32_t seed = 50;
    auto make = [&](int64_t rows, int64_t cols) {
      owned.push_back(random_weight(dt, rows, cols, seed++));
      return owned.back()->w;
    };
    MoeWeights moe;
    moe.gate = make(E, H);
    for (int64_t e = 0; e < E; ++e) moe.experts.push_back({make(inter, H), make(inter, H), make(H, inter)});
    moe.shared_experts = MlpWeights{make(2 * inter, H), make(2 * inter, H), make(H, 2 * inter)};
    // 70 tokens: ~23 per expert (past kGemmMinTokens), some experts with fewer.
    const int64_t n = 70;
    auto x = random_vector(n * H, 8);
    std::mt19937 rng(3);
    std::vector<int32_t> experts(size_t(n * K));
    std::vector<float> weights(size_t(n * K));
    for (int64_t i = 0; i < n; ++i) {
      std::vector<int32_t> all(E);
      std::iota(all.begin(), all.end(), 0);
      std::shuffle(all.begin(), all.begin() + (i % 3 == 0 ? E : 3), rng);  // experts 0-2 busier
      for (int64_t k = 0; k < K; ++k) {
        experts[size_t(i * K + k)] = all[size_t(k)];
        weights[size_t(i * K + k)] = 0.7f - 0.2f * float(k);
      }
    }
    std::vector<float> alone(size_t(n * H)), batch(size_t(n * H));
    for (int64_t i = 0; i < n; ++i)
      cpu.moe(moe, x.data() + i * H, 1, experts.data() + i * K, weights.data() + i * K, K, alone.data() + i * H);
    for (int64_t m : {int64_t(5), n}) {
      cpu.moe(moe, x.data(), m, experts.data(), weights.data(), K, batch.data());
      for (int64_t i = 0; i < m; ++i)
        expect_same_row(batch, i, alone, i, H,
                        std::string(dtype_name(dt)) + " token " + std::to_string(i) + " of " + std::to_string(m));
    }
  }
}

TEST_P(BatchInvarianceTest, AttentionEntryAloneEqualsInsideSteps) {
  ThreadPool pool(GetParam());
  CpuBackend cpu(pool);
  const int64_t nh = 3, nope = 32, R = 16, vd = 24, L = 160, row = L + R, qk = nope + R;
  for (DType dt : {DType::F8_E4M3, DType::BF16}) {
    auto kvb = random_weight(dt, nh * (nope + vd), L, 17);
    const MlaShape s{.n_heads = nh, .qk_nope_head_dim = nope, .qk_rope_head_dim = R, .v_head_dim = vd,
                     .kv_lora_rank = L, .softmax_scale = 0.2f, .kv_b_proj = &kvb->w};
    auto cache_a = random_vector(700 * row, 1), cache_b = random_vector(300 * row, 2);
    // A prompt of 40 tokens at positions 260 .. 299 of sequence b, decode entries of sequence a with
    // contexts on both sides of a part (128 rows), and a lone decode entry of b.
    std::vector<LatentRows> ctx;
    for (int64_t i = 0; i < 40; ++i) ctx.push_back({cache_b.data(), 261 + i});
    for (int64_t m : {700, 5, 129, 128, 257}) ctx.push_back({cache_a.data(), m});
    ctx.insert(ctx.begin() + 17, {cache_b.data(), 150});
    const int64_t n = int64_t(ctx.size());
    auto q = random_vector(n * nh * qk, 4);
    std::vector<float> alone(size_t(n * nh * vd)), out(size_t(n * nh * vd));
    for (int64_t i = 0; i < n; ++i)
      cpu.mla_attention(s, q.data() + i * nh * qk, 1, {&ctx[size_t(i)], 1}, alone.data() + i * nh * vd, true);
    // The whole step, then its first entries (fewer than kGemmMinTokens), then the prompt's last 3.
    for (auto [i0, i1] : {std::pair<int64_t, int64_t>{0, n}, {0, 9}, {37, 40}}) {
      cpu.mla_attention(s, q.data() + i0 * nh * qk, i1 - i0, {ctx.data() + i0, size_t(i1 - i0)}, out.data(), true);
      for (int64_t i = i0; i < i1; ++i)
        expect_same_row(out, i - i0, alone, i, nh * vd,
                        std::string(dtype_name(dt)) + " entry " + std::to_string(i) + " (context " +
                            std::to_string(ctx[size_t(i)].n_ctx) + ") in entries " + std::to_string(i0) + ".." +
                            std::to_string(i1));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Threads, BatchInvarianceTest, ::testing::Values(1, 2));

}  // namespace
}  // namespace dsv3
