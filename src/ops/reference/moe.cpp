// MoE routing and experts (model.py Gate.forward and MoE.forward, with the config's
// topk_method / norm_topk_prob honoured as HF's config states them).
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "base/error.h"
#include "ops/reference/reference.h"

namespace dsv3::ref {

namespace {

// Indices of the k largest values, largest first (ties: lower index first).
std::vector<int32_t> top_k(const std::vector<float>& v, int64_t k) {
  std::vector<int32_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) { return v[a] > v[b]; });
  idx.resize(size_t(k));
  return idx;
}

}  // namespace

void moe_route(const RouteShape& s, const float* logits, int64_t n, int32_t* experts, float* weights) {
  const int64_t E = s.n_routed_experts, K = s.num_experts_per_tok;
  std::vector<float> bias(size_t(E), 0.0f);
  if (s.e_score_correction_bias) dequant_row(*s.e_score_correction_bias, 0, bias.data());
  std::vector<float> scores(static_cast<size_t>(E)), select(static_cast<size_t>(E));
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
    // Experts are *selected* by score + e_score_correction_bias but *weighted* by the score
    // alone: the bias only balances load (DeepSeek-V3 report, aux-loss-free balancing).
    for (int64_t e = 0; e < E; ++e) select[e] = scores[e] + bias[e];
    if (s.n_group > 1 && s.topk_method != TopkMethod::Greedy) {
      const int64_t per = E / s.n_group;
      std::vector<float> group_score(static_cast<size_t>(s.n_group));
      for (int64_t g = 0; g < s.n_group; ++g) {
        std::vector<float> in(select.begin() + g * per, select.begin() + (g + 1) * per);
        std::sort(in.begin(), in.end(), std::greater<float>());
        // noaux_tc scores a group by the sum of its top two; group_limited_greedy by its max.
        group_score[g] = s.topk_method == TopkMethod::NoauxTc ? in[0] + in[1] : in[0];
      }
      const auto keep = top_k(group_score, s.topk_group);
      for (int64_t g = 0; g < s.n_group; ++g)
        if (std::find(keep.begin(), keep.end(), int32_t(g)) == keep.end())
          for (int64_t e = g * per; e < (g + 1) * per; ++e) select[e] = -INFINITY;  // model.py: -inf, not 0
    }
    const auto chosen = top_k(select, K);
    float sum = 0;
    for (int64_t k = 0; k < K; ++k) sum += scores[chosen[k]];
    for (int64_t k = 0; k < K; ++k) {
      float w = scores[chosen[k]];
      if (s.norm_topk_prob) w /= sum;
      experts[i * K + k] = chosen[k];
      weights[i * K + k] = w * s.routed_scaling_factor;
    }
  }
}

void mlp(const MlpWeights& w, const float* x, int64_t n, float* out) {
  const int64_t inter = w.gate_proj.rows;
  std::vector<float> g(static_cast<size_t>(n * inter)), u(static_cast<size_t>(n * inter));
  linear(w.gate_proj, x, n, g.data());
  linear(w.up_proj, x, n, u.data());
  for (size_t i = 0; i < g.size(); ++i) g[i] = silu(g[i]) * u[i];
  linear(w.down_proj, g.data(), n, out);
}

void moe(const MoeWeights& w, const float* x, int64_t n, const int32_t* experts, const float* weights,
         int64_t top_k, float* out) {
  const int64_t hidden = w.gate.cols;
  std::vector<float> y(static_cast<size_t>(hidden));
  for (int64_t i = 0; i < n; ++i) {
    const float* xi = x + i * hidden;
    float* oi = out + i * hidden;
    std::fill(oi, oi + hidden, 0.0f);
    // model.py accumulates y[idx] += expert(x[idx]) * weight over experts in index order.
    std::vector<std::pair<int32_t, float>> picks;
    for (int64_t k = 0; k < top_k; ++k) picks.emplace_back(experts[i * top_k + k], weights[i * top_k + k]);
    std::sort(picks.begin(), picks.end());
    for (const auto& [e, wt] : picks) {
      const int64_t local = e - w.expert_begin;
      if (local < 0 || local >= int64_t(w.experts.size())) continue;  // another rank's expert
      mlp(w.experts[size_t(local)], xi, 1, y.data());
      for (int64_t c = 0; c < hidden; ++c) oi[c] += y[size_t(c)] * wt;
    }
    if (w.shared_experts) {
      mlp(*w.shared_experts, xi, 1, y.data());
      for (int64_t c = 0; c < hidden; ++c) oi[c] += y[size_t(c)];
    }
  }
}

}  // namespace dsv3::ref
