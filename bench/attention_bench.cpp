// Decode attention over the latent cache, one entry, bench-m's shapes (16 heads, kv_lora_rank
// 512, rope 64, FP8 kv_b_proj): contiguous f32 rows against the paged cache (64-position blocks,
// interleaved with another sequence's) in f32 and in BF16, in alternating rounds of one run, so
// that the ratios hold however the machine's speed drifts. Prints each variant's minimum and
// median per call and the ratios of the minima.
// COLD=1 reads a buffer of 3x the L3 cache before each call (not timed), as a decode step's
// weights do between one layer's attention and the next: the cache rows then come from memory.
// Usage: build/bench/dsv3_attention_bench [CONTEXT=2048] [ROUNDS=8] [CALLS=100] [THREADS=1] [COLD=0]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/cpu_info.h"
#include "backends/cpu/kernels.h"
#include "backends/cpu/test_weights.h"
#include "model/kv_cache.h"

using namespace dsv3;

int main(int argc, char** argv) {
  const int64_t ctx = argc > 1 ? std::atoll(argv[1]) : 2048;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 8, calls = argc > 3 ? std::atoi(argv[3]) : 100;
  const int threads = argc > 4 ? std::atoi(argv[4]) : 1;
  const bool cold = argc > 5 && std::atoi(argv[5]) != 0;
  if (ctx < 1 || rounds < 1 || calls < 1 || threads < 1) {
    std::fprintf(stderr, "usage: dsv3_attention_bench [CONTEXT] [ROUNDS] [CALLS] [THREADS] [COLD]\n");
    return 2;
  }
  std::vector<float> evict;
  if (cold) evict.assign(size_t(3 * std::max<int64_t>(cpu::read_cpu_info().l3_bytes, 32 << 20) / 4), 1.0f);
  volatile float sink = 0;
  ThreadPool pool(threads);
  CpuBackend cpu(pool);
  const int64_t nh = 16, nope = 128, R = 64, vd = 128, L = 512, row = L + R;
  auto kvb = dsv3::testing::random_weight(DType::F8_E4M3, nh * (nope + vd), L, 3);
  const MlaShape s{.n_heads = nh, .qk_nope_head_dim = nope, .qk_rope_head_dim = R, .v_head_dim = vd,
                   .kv_lora_rank = L, .softmax_scale = 0.07f, .kv_b_proj = &kvb->w};
  const auto rows = dsv3::testing::random_vector(ctx * row, 5);
  const auto q = dsv3::testing::random_vector(nh * (nope + R), 6);
  std::vector<float> out(size_t(nh * vd));

  struct Variant {
    const char* name;
    LatentRows rows;
    std::vector<double> us;
  };
  auto paged = [&](CacheDtype dt, bool interleave = true, int64_t bs = 64) {
    auto bp = std::make_shared<BlockPool>(CacheLayout{.n_layers = 1, .row = row, .block_size = bs, .dtype = dt},
                                          2 * ((ctx + bs - 1) / bs));
    auto a = std::make_unique<SequenceCache>(bp), other = std::make_unique<SequenceCache>(bp);
    for (int64_t p = 0; p < ctx; ++p) {
      a->try_make_writable(p);
      a->write_row(0, p, rows.data() + p * row);
      a->mark_written(0, p);
      if (interleave) other->try_make_writable(p);  // the two tables' blocks alternate in the pool
    }
    return a;
  };
  auto f32 = paged(CacheDtype::F32), bf16 = paged(CacheDtype::BF16), in_order = paged(CacheDtype::F32, false),
       big = paged(CacheDtype::F32, true, 256);
  std::vector<Variant> v = {{"contiguous f32", LatentRows{rows.data(), ctx}, {}},
                            {"paged f32", f32->view(0, ctx), {}},
                            {"paged bf16", bf16->view(0, ctx), {}},
                            {"paged f32, blocks in order", in_order->view(0, ctx), {}},
                            {"paged f32, 256-position blocks", big->view(0, ctx), {}}};
  for (int r = 0; r < rounds; ++r)
    for (auto& x : v)
      for (int i = 0; i < calls; ++i) {
        if (cold) sink = sink + cpu::sum_f32(evict.data(), int64_t(evict.size()));
        const auto t0 = std::chrono::steady_clock::now();
        cpu.mla_attention(s, q.data(), 1, {&x.rows, 1}, out.data(), true);
        x.us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
      }
  std::printf("decode attention, context %lld, %d thread(s), %d rounds x %d calls, cache rows %s:\n", (long long)ctx,
              threads, rounds, calls, cold ? "from memory (evicted before each call)" : "in cache");
  for (auto& x : v) {
    std::sort(x.us.begin(), x.us.end());
    std::printf("  %-31s min %9.1f us   median %9.1f us\n", x.name, x.us.front(), x.us[x.us.size() / 2]);
  }
  std::printf("  paged f32 / contiguous f32: %.3f (min), %.3f (median)\n", v[1].us.front() / v[0].us.front(),
              v[1].us[v[1].us.size() / 2] / v[0].us[v[0].us.size() / 2]);
  std::printf("  paged bf16 / paged f32:     %.3f (min), %.3f (median)\n", v[2].us.front() / v[1].us.front(),
              v[2].us[v[2].us.size() / 2] / v[1].us[v[1].us.size() / 2]);
  return 0;
}
