// DeepSeekMoE on the CPU backend. Tokens are grouped by expert (a counting sort of the routing),
// so each selected expert's weights are read once per step for all the tokens that chose it: in
// decode only the top_k selected experts are touched, in prefill each expert runs one batched
// linear (gemm.h) over its tokens. All experts' gate/up projections run in one parallel region and
// all down projections in a second one.
#include <algorithm>

#include "backends/cpu/cpu_backend.h"
#include "base/error.h"
#include "model/scratch.h"

namespace dsv3 {

void CpuBackend::moe(const MoeWeights& w, const float* x, int64_t n, const int32_t* experts, const float* weights,
                     int64_t top_k, float* out) {
  const int64_t H = w.gate.cols, E = int64_t(w.experts.size()), nk = n * top_k;
  if (n == 0) return;
  const int64_t inter = w.experts.empty() ? 0 : w.experts[0].gate_proj.rows;

  // count[e] .. count[e+1]: the slots of expert e; slot[i * top_k + k] = row of (token i, pick k)
  // in the grouped buffers (tokens in order within an expert).
  int32_t* count = grow(count_, 2 * E + 1);
  int32_t* fill = count + E + 1;  // running fill position per expert
  int32_t* slot = grow(slot_, nk);
  // Picks of experts this rank does not hold (expert_begin, tensor/expert parallelism) get no
  // slot (-1) and add nothing.
  const int64_t e0 = w.expert_begin;
  auto local = [&](int64_t i) -> int64_t {
    const int64_t e = experts[i] - e0;
    return e >= 0 && e < E ? e : -1;
  };
  std::fill(count, count + E + 1, 0);
  for (int64_t i = 0; i < nk; ++i)
    if (const int64_t e = local(i); e >= 0) ++count[e + 1];
  for (int64_t e = 0; e < E; ++e) count[e + 1] += count[e];
  std::copy(count, count + E, fill);
  float* xg = grow(xg_, nk * H);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < top_k; ++k) {
      const int64_t e = local(i * top_k + k);
      if (e < 0) {
        slot[i * top_k + k] = -1;
        continue;
      }
      const int32_t s = fill[e]++;
      slot[i * top_k + k] = s;
      std::copy_n(x + i * H, H, xg + int64_t(s) * H);
    }

  float* g = grow(g_, nk * inter);
  float* u = grow(u_, nk * inter);
  float* yg = grow(yg_, nk * H);
  const MlpWeights* shared = w.shared_experts ? &*w.shared_experts : nullptr;
  const int64_t inter_s = shared ? shared->gate_proj.rows : 0;
  float* gs = grow(gs_, n * inter_s);
  float* us = grow(us_, n * inter_s);
  float* ys = grow(ys_, n * H);

  std::vector<LinearJob>& jobs = jobs_;
  jobs.clear();
  for (int64_t e = 0; e < E; ++e) {
    const int64_t m = count[e + 1] - count[e];
    if (m == 0) continue;
    const MlpWeights& ew = w.experts[size_t(e)];
    jobs.push_back({&ew.gate_proj, xg + int64_t(count[e]) * H, m, g + int64_t(count[e]) * inter});
    jobs.push_back({&ew.up_proj, xg + int64_t(count[e]) * H, m, u + int64_t(count[e]) * inter});
  }
  if (shared) {
    jobs.push_back({&shared->gate_proj, x, n, gs});
    jobs.push_back({&shared->up_proj, x, n, us});
  }
  linear_jobs(jobs);
  swiglu(g, u, nk * inter);
  if (shared) swiglu(gs, us, n * inter_s);

  jobs.clear();
  for (int64_t e = 0; e < E; ++e) {
    const int64_t m = count[e + 1] - count[e];
    if (m == 0) continue;
    jobs.push_back({&w.experts[size_t(e)].down_proj, g + int64_t(count[e]) * inter, m, yg + int64_t(count[e]) * H});
  }
  if (shared) jobs.push_back({&shared->down_proj, gs, n, ys});
  linear_jobs(jobs);

  // Combine per token in expert-index order, then the shared experts (model.py MoE.forward and
  // ref::moe add in this order).
  pool_.parallel_for(n, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      float* oi = out + i * H;
      std::fill(oi, oi + H, 0.0f);
      int32_t order[64];
      const int64_t K = std::min<int64_t>(top_k, 64);
      DSV3_CHECK(top_k <= 64, "num_experts_per_tok above 64");
      for (int64_t k = 0; k < K; ++k) order[k] = int32_t(k);
      std::sort(order, order + K,
                [&](int32_t a, int32_t c) { return experts[i * top_k + a] < experts[i * top_k + c]; });
      for (int64_t kk = 0; kk < K; ++kk) {
        const int64_t k = order[kk];
        if (slot[i * top_k + k] < 0) continue;
        const float wt = weights[i * top_k + k];
        const float* y = yg + int64_t(slot[i * top_k + k]) * H;
        for (int64_t c = 0; c < H; ++c) oi[c] += y[c] * wt;
      }
      if (shared)
        for (int64_t c = 0; c < H; ++c) oi[c] += ys[i * H + c];
    }
  });
}

}  // namespace dsv3
