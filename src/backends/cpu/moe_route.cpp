// The MoE router without allocation (ref::moe_route's math and tie-breaking, on reused scratch):
// the decode step must not allocate.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "backends/cpu/cpu_backend.h"
#include "model/scratch.h"

namespace dsv3 {

namespace {

// The k largest of v[idx[0..n)], largest first, ties to the lower index (as the reference's
// stable sort), left in idx[0..k). std::sort with a total order: no temporary buffer.
void top_k(const float* v, int32_t* idx, int64_t n, int64_t k) {
  std::iota(idx, idx + n, 0);
  std::partial_sort(idx, idx + k, idx + n, [&](int32_t a, int32_t b) { return v[a] > v[b] || (v[a] == v[b] && a < b); });
}

}  // namespace

void CpuBackend::moe_route(const RouteShape& s, const float* logits, int64_t n, int32_t* experts, float* weights) {
  const int64_t E = s.n_routed_experts, K = s.num_experts_per_tok;
  float* scores = grow(route_f_, 3 * E + s.n_group);
  float* select = scores + E;
  float* bias = select + E;
  float* group_score = bias + E;
  int32_t* idx = grow(route_i_, E + s.n_group);
  int32_t* gidx = idx + E;
  for (int64_t e = 0; e < E; ++e) bias[e] = s.e_score_correction_bias ? weight_at(*s.e_score_correction_bias, 0, e) : 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    const float* l = logits + i * E;
    if (s.scoring_func == ScoringFunc::Sigmoid) {
      for (int64_t e = 0; e < E; ++e) scores[e] = 1.0f / (1.0f + std::exp(-l[e]));
    } else {
      const float m = *std::max_element(l, l + E);
      double sum = 0;
      for (int64_t e = 0; e < E; ++e) sum += std::exp(double(l[e]) - m);
      for (int64_t e = 0; e < E; ++e) scores[e] = float(std::exp(double(l[e]) - m) / sum);
    }
    // Selected by score + bias, weighted by score alone (DeepSeek-V3 report, aux-loss-free balancing).
    for (int64_t e = 0; e < E; ++e) select[e] = scores[e] + bias[e];
    if (s.n_group > 1 && s.topk_method != TopkMethod::Greedy) {
      const int64_t per = E / s.n_group;
      for (int64_t g = 0; g < s.n_group; ++g) {
        // noaux_tc scores a group by the sum of its top two; group_limited_greedy by its max.
        float best = -INFINITY, second = -INFINITY;
        for (int64_t e = g * per; e < (g + 1) * per; ++e) {
          if (select[e] > best) {
            second = best, best = select[e];
          } else if (select[e] > second) {
            second = select[e];
          }
        }
        group_score[g] = s.topk_method == TopkMethod::NoauxTc ? best + second : best;
      }
      top_k(group_score, gidx, s.n_group, s.topk_group);
      for (int64_t g = 0; g < s.n_group; ++g)
        if (std::find(gidx, gidx + s.topk_group, int32_t(g)) == gidx + s.topk_group)
          for (int64_t e = g * per; e < (g + 1) * per; ++e) select[e] = -INFINITY;
    }
    top_k(select, idx, E, K);
    float sum = 0;
    for (int64_t k = 0; k < K; ++k) sum += scores[idx[k]];
    for (int64_t k = 0; k < K; ++k) {
      float w = scores[idx[k]];
      if (s.norm_topk_prob) w /= sum;
      experts[i * K + k] = idx[k];
      weights[i * K + k] = w * s.routed_scaling_factor;
    }
  }
}

}  // namespace dsv3
