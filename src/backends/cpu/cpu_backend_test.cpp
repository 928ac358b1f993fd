// CpuBackend ops against ReferenceBackend at 1 and 2 threads, for token counts on both sides
// of the many-token threshold (kGemmMinTokens) and odd shapes (non-multiples of 128 and of the SIMD
// width).
//
// Tolerance: weights dequantise exactly; the backend accumulates in f32 (SIMD kernels) where the
// reference uses double, so each dot of length K errs by at most ~K * 2^-24 * Σ|terms|. The
// composite ops chain two or three such products plus exp/silu in f32; we allow 1e-5 relative to
// the largest output magnitude (about 100 ulp of f32 at K <= 1000), far below a wrong index or
// a missing block scale, which show as O(1) errors.
#include "backends/cpu/cpu_backend.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "backends/cpu/test_weights.h"
#include "model/kv_cache.h"

namespace dsv3 {
namespace {

using testing::random_vector;
using testing::random_weight;

void expect_close(const std::vector<float>& got, const std::vector<float>& want, double rel, const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  double mx = 0;
  for (float v : want) mx = std::max(mx, double(std::fabs(v)));
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], rel * mx + 1e-30) << what << " at " << i;
}

class CpuBackendTest : public ::testing::TestWithParam<int> {};

TEST_P(CpuBackendTest, Linear) {
  ThreadPool pool(GetParam());
  CpuBackend cpu(pool);
  for (DType dt : {DType::F8_E4M3, DType::BF16})
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{300, 129}, {7, 7}, {129, 256}, {200, 72}})
      for (int64_t n : {1, 3, 7, 15, 16, 17, 40}) {
        auto w = random_weight(dt, rows, cols, uint32_t(rows + cols));
        auto x = random_vector(n * cols, uint32_t(n));
        std::vector<float> got(static_cast<size_t>(n * rows)), want(static_cast<size_t>(n * rows));
        cpu.linear(w->w, x.data(), n, got.data());
        ref::linear(w->w, x.data(), n, want.data());
        expect_close(got, want, 1e-5, std::string(dtype_name(dt)) + " n=" + std::to_string(n));
      }
}

struct Experts {
  std::vector<std::unique_ptr<testing::OwnedWeight>> owned;
  MoeWeights moe;
};

Experts make_experts(DType dt, int64_t E, int64_t H, int64_t inter, int64_t inter_s) {
  Experts x;
  uint32_t seed = 100;
  auto make = [&](int64_t rows, int64_t cols) {
    x.owned.push_back(random_weight(dt, rows, cols, seed++));
    return x.owned.back()->w;
  };
  x.moe.gate = make(E, H);
  for (int64_t e = 0; e < E; ++e) x.moe.experts.push_back({make(inter, H), make(inter, H), make(H, inter)});
  x.moe.shared_experts = MlpWeights{make(inter_s, H), make(inter_s, H), make(H, inter_s)};
  return x;
}

TEST_P(CpuBackendTest, MlpAndMoe) {
  ThreadPool pool(GetParam());
  CpuBackend cpu(pool);
  const int64_t E = 8, H = 72, inter = 40, K = 3;
  for (DType dt : {DType::F8_E4M3, DType::BF16}) {
    Experts ex = make_experts(dt, E, H, inter, 2 * inter);
    for (int64_t n : {1, 2, 5, 20, 60}) {  // 60: ~22 tokens per expert, past kGemmMinTokens
      auto x = random_vector(n * H, uint32_t(n));
      std::mt19937 rng(static_cast<uint32_t>(n));
      std::vector<int32_t> experts(static_cast<size_t>(n * K));
      std::vector<float> weights(static_cast<size_t>(n * K));
      for (int64_t i = 0; i < n; ++i) {
        std::vector<int32_t> all(E);
        std::iota(all.begin(), all.end(), 0);
        std::shuffle(all.begin(), all.end(), rng);
        for (int64_t k = 0; k < K; ++k) experts[size_t(i * K + k)] = all[size_t(k)], weights[size_t(i * K + k)] = 0.3f + 0.1f * float(k);
      }
      std::vector<float> got(static_cast<size_t>(n * H)), want(static_cast<size_t>(n * H));
      cpu.moe(ex.moe, x.data(), n, experts.data(), weights.data(), K, got.data());
      ref::moe(ex.moe, x.data(), n, experts.data(), weights.data(), K, want.data());
      expect_close(got, want, 1e-5, "moe n=" + std::to_string(n));
      cpu.mlp(*ex.moe.shared_experts, x.data(), n, got.data());
      ref::mlp(*ex.moe.shared_experts, x.data(), n, want.data());
      expect_close(got, want, 1e-5, "mlp n=" + std::to_string(n));
    }
  }
}

// An absorbed-MLA shape with odd sizes (L = 160: not a multiple of 128) over a random kv_b_proj.
struct TestMla {
  std::unique_ptr<testing::OwnedWeight> kv_b_proj;
  MlaShape s;
};
TestMla test_mla(DType dt, int64_t nh, float softmax_scale, uint32_t seed) {
  const int64_t nope = 32, R = 16, vd = 24, L = 160;
  TestMla m{random_weight(dt, nh * (nope + vd), L, seed), {}};
  m.s = MlaShape{.n_heads = nh, .qk_nope_head_dim = nope, .qk_rope_head_dim = R, .v_head_dim = vd,
                 .kv_lora_rank = L, .softmax_scale = softmax_scale, .kv_b_proj = &m.kv_b_proj->w};
  return m;
}
// Cache rows of the test shape's width (kv_lora_rank + qk_rope_head_dim).
std::vector<float> test_cache(const MlaShape& s, int64_t rows, uint32_t seed) {
  return random_vector(rows * (s.kv_lora_rank + s.qk_rope_head_dim), seed);
}

// One step's entries (their contexts `ctx`) through the backend and the reference.
void expect_attention_matches(CpuBackend& cpu, const MlaShape& s, const std::vector<LatentRows>& ctx, uint32_t seed,
                              std::string_view what) {
  const int64_t n = int64_t(ctx.size()), nh = s.n_heads;
  auto q = random_vector(n * nh * (s.qk_nope_head_dim + s.qk_rope_head_dim), seed);
  std::vector<float> got(size_t(n * nh * s.v_head_dim)), want(size_t(n * nh * s.v_head_dim));
  cpu.mla_attention(s, q.data(), n, ctx, got.data(), true);
  ref::mla_attention_absorbed(s, q.data(), n, ctx, want.data());
  expect_close(got, want, 1e-5, std::string(what) + " n=" + std::to_string(n));
}

TEST_P(CpuBackendTest, AbsorbedAttention) {
  ThreadPool pool(GetParam());
  CpuBackend cpu(pool);
  for (DType dt : {DType::F8_E4M3, DType::BF16}) {
    const TestMla m = test_mla(dt, 3, 0.1f, 7);
    auto cache = test_cache(m.s, 40, 3);
    auto cache2 = test_cache(m.s, 40, 4);
    for (int64_t n : {1, 2, 9, 17, 35, 24}) {
      // Entries at the last n positions of a 40-row cache, as a prefill (or a decode for n=1) sees
      // them; n = 24: two sequences of 12 in one batch, the second (its own cache) prefilled from
      // row 12, so that only the cache pointer tells the sequences apart.
      std::vector<LatentRows> ctx;
      for (int64_t i = 0; i < n; ++i)
        ctx.push_back({n == 24 && i >= 12 ? cache2.data() : cache.data(), n == 24 ? i + 1 : 40 - n + i + 1});
      expect_attention_matches(cpu, m.s, ctx, uint32_t(n), dtype_name(dt));
    }
  }
}

// Decode over contexts long enough to be split into parts (each part's softmax rescaled into
// one), short ones that are not, and entries of different sequences in one step (at 2 threads a
// step of 2 entries splits each into up to 2 parts; one of 4 entries splits none).
TEST_P(CpuBackendTest, AbsorbedAttentionDecodeLongContexts) {
  ThreadPool pool(GetParam());
  CpuBackend cpu(pool);
  for (DType dt : {DType::F8_E4M3, DType::BF16}) {
    const TestMla m = test_mla(dt, 5, 0.3f, 9);
    auto cache = test_cache(m.s, 1100, 5);
    auto cache2 = test_cache(m.s, 300, 6);
    expect_attention_matches(cpu, m.s, {{cache.data(), 1100}}, 21, dtype_name(dt));
    expect_attention_matches(cpu, m.s, {{cache.data(), 700}, {cache2.data(), 5}}, 22, dtype_name(dt));
    expect_attention_matches(
        cpu, m.s, {{cache.data(), 700}, {cache2.data(), 300}, {cache.data(), 129}, {cache2.data(), 5}}, 24,
        dtype_name(dt));
  }
}

// The paged cache: rows in blocks of a pool, two sequences' blocks interleaved (so that a
// sequence's blocks are neither contiguous nor in order in memory). F32 pages give exactly the
// contiguous rows' results (the same sums, whatever the block size); BF16 pages match the
// reference over the same rounded rows.
TEST_P(CpuBackendTest, AbsorbedAttentionOverPagedRows) {
  ThreadPool pool(GetParam());
  CpuBackend cpu(pool);
  const TestMla m = test_mla(DType::BF16, 4, 0.2f, 11);
  const int64_t row = m.s.cache_row(), n_rows = 300;
  const auto rows = test_cache(m.s, n_rows, 12);
  for (int64_t bs : {16, 64, 256})
    for (CacheDtype dt : {CacheDtype::F32, CacheDtype::BF16}) {
      auto bp = std::make_shared<BlockPool>(CacheLayout{.n_layers = 1, .row = row, .block_size = bs, .dtype = dt}, 0);
      SequenceCache a(bp), other(bp);
      for (int64_t p = 0; p < n_rows; ++p) {
        ASSERT_TRUE(a.try_make_writable(p));
        a.write_row(0, p, rows.data() + p * row);
        a.mark_written(0, p);
        ASSERT_TRUE(other.try_make_writable(p));  // interleaves the two tables' blocks
      }
      // A decode entry over the whole context, and a 20-token prefill ending at row 300.
      std::vector<LatentRows> paged, flat;
      paged.push_back(a.view(0, n_rows));
      flat.push_back({rows.data(), n_rows});
      for (int64_t i = 0; i < 20; ++i) {
        paged.push_back(a.view(0, n_rows - 19 + i));
        flat.push_back({rows.data(), n_rows - 19 + i});
      }
      const std::string what = "block size " + std::to_string(bs) + " " + cache_dtype_name(dt);
      for (auto [i0, i1] : {std::pair<size_t, size_t>{0, 1}, {1, 21}}) {
        const std::vector<LatentRows> pg(paged.begin() + int64_t(i0), paged.begin() + int64_t(i1));
        expect_attention_matches(cpu, m.s, pg, uint32_t(30 + i0), what);
        if (dt != CacheDtype::F32) continue;
        const std::vector<LatentRows> fl(flat.begin() + int64_t(i0), flat.begin() + int64_t(i1));
        const int64_t n = int64_t(pg.size()), nh = m.s.n_heads;
        auto q = random_vector(n * nh * m.s.qk_head_dim(), 40);
        std::vector<float> got(size_t(n * nh * m.s.v_head_dim)), want(got.size());
        cpu.mla_attention(m.s, q.data(), n, pg, got.data(), true);
        cpu.mla_attention(m.s, q.data(), n, fl, want.data(), true);
        EXPECT_EQ(got, want) << what << ": paged and contiguous rows differ";
      }
    }
}

TEST_P(CpuBackendTest, RmsNorm) {
  ThreadPool pool(GetParam());
  CpuBackend cpu(pool);
  auto w = random_weight(DType::BF16, 1, 77, 1);
  for (int64_t n : {3, 40}) {  // a decode step's few tokens; a prompt's, spread over the threads
    auto x = random_vector(n * 77, 2);
    std::vector<float> got(x.size()), want(x.size());
    cpu.rms_norm(x.data(), n, w->w, 1e-6f, got.data());
    ref::rms_norm(x.data(), n, w->w, 1e-6f, want.data());
    EXPECT_EQ(got, want) << "n=" << n;  // the same arithmetic
  }
}

TEST_P(CpuBackendTest, MoeRouteMatchesReferenceExactly) {
  ThreadPool pool(GetParam());
  CpuBackend cpu(pool);
  const int64_t E = 16, n = 9;
  auto bias = random_weight(DType::F32, 1, E, 4, 0.1f);
  for (auto method : {TopkMethod::NoauxTc, TopkMethod::GroupLimitedGreedy, TopkMethod::Greedy}) {
    RouteShape s{.n_routed_experts = E, .num_experts_per_tok = 4, .n_group = 4, .topk_group = 2,
                 .scoring_func = method == TopkMethod::NoauxTc ? ScoringFunc::Sigmoid : ScoringFunc::Softmax,
                 .topk_method = method, .norm_topk_prob = method == TopkMethod::NoauxTc,
                 .routed_scaling_factor = 2.5f,
                 .e_score_correction_bias = method == TopkMethod::NoauxTc ? &bias->w : nullptr};
    auto logits = random_vector(n * E, 11, 3.0f);
    logits[3] = logits[5];  // a tie: the lower index wins in both
    std::vector<int32_t> ge(static_cast<size_t>(n * 4)), we(static_cast<size_t>(n * 4));
    std::vector<float> gw(static_cast<size_t>(n * 4)), ww(static_cast<size_t>(n * 4));
    cpu.moe_route(s, logits.data(), n, ge.data(), gw.data());
    ref::moe_route(s, logits.data(), n, we.data(), ww.data());
    EXPECT_EQ(ge, we);
    EXPECT_EQ(gw, ww);
  }
}

INSTANTIATE_TEST_SUITE_P(Threads, CpuBackendTest, ::testing::Values(1, 2));

}  // namespace
}  // namespace dsv3
