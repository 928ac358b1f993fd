// MLA attention over the latent cache (model.py MLA.forward, attn_impl "absorb" and "naive").
#include <cmath>
#include <vector>

#include "ops/reference/reference.h"

namespace dsv3::ref {

namespace {

// Softmax of scores [n] in place, in double.
void softmax(std::vector<double>& p) {
  double m = -INFINITY;
  for (double v : p) m = std::max(m, v);
  double sum = 0;
  for (double& v : p) sum += (v = std::exp(v - m));
  for (double& v : p) v /= sum;
}

// kv_b_proj rows for head h: k_nope rows [h*(nope+v), +nope), v rows [+nope, +v).
struct HeadRows {
  std::vector<float> k;  // [nope, kv_lora]
  std::vector<float> v;  // [v, kv_lora]
};

std::vector<HeadRows> dequant_kv_b(const MlaShape& s) {
  std::vector<HeadRows> heads(size_t(s.n_heads));
  const int64_t per = s.qk_nope_head_dim + s.v_head_dim, L = s.kv_lora_rank;
  for (int64_t h = 0; h < s.n_heads; ++h) {
    heads[h].k.resize(size_t(s.qk_nope_head_dim * L));
    heads[h].v.resize(size_t(s.v_head_dim * L));
    for (int64_t d = 0; d < s.qk_nope_head_dim; ++d) dequant_row(*s.kv_b_proj, h * per + d, &heads[h].k[d * L]);
    for (int64_t d = 0; d < s.v_head_dim; ++d)
      dequant_row(*s.kv_b_proj, h * per + s.qk_nope_head_dim + d, &heads[h].v[d * L]);
  }
  return heads;
}

}  // namespace

void mla_attention_absorbed(const MlaShape& s, const float* q, int64_t n, std::span<const LatentRows> ctx,
                            float* out) {
  const auto heads = dequant_kv_b(s);
  const int64_t L = s.kv_lora_rank, R = s.qk_rope_head_dim, row = s.cache_row();
  std::vector<double> q_lat(static_cast<size_t>(L)), o_lat(static_cast<size_t>(L));
  std::vector<float> tmp(static_cast<size_t>(row));
  for (int64_t i = 0; i < n; ++i) {
    const LatentRows& c = ctx[size_t(i)];
    for (int64_t h = 0; h < s.n_heads; ++h) {
      const float* qh = q + (i * s.n_heads + h) * s.qk_head_dim();
      // q_nope folded through the head's k_nope rows of kv_b_proj: q_lat = W_kᵀ q_nope.
      for (int64_t c2 = 0; c2 < L; ++c2) {
        double acc = 0;
        for (int64_t d = 0; d < s.qk_nope_head_dim; ++d) acc += double(qh[d]) * heads[h].k[d * L + c2];
        q_lat[c2] = double(float(acc));
      }
      std::vector<double> p(static_cast<size_t>(c.n_ctx));
      for (int64_t t = 0; t < c.n_ctx; ++t) {
        const float* kv = c.row_f32(t, row, tmp.data());
        double acc = 0;
        for (int64_t c2 = 0; c2 < L; ++c2) acc += q_lat[c2] * kv[c2];
        for (int64_t r = 0; r < R; ++r) acc += double(qh[s.qk_nope_head_dim + r]) * kv[L + r];
        p[t] = acc * s.softmax_scale;
      }
      softmax(p);
      std::fill(o_lat.begin(), o_lat.end(), 0.0);
      for (int64_t t = 0; t < c.n_ctx; ++t) {
        const float* kv = c.row_f32(t, row, tmp.data());
        for (int64_t c2 = 0; c2 < L; ++c2) o_lat[c2] += p[t] * kv[c2];
      }
      float* oh = out + (i * s.n_heads + h) * s.v_head_dim;
      for (int64_t d = 0; d < s.v_head_dim; ++d) {
        double acc = 0;
        for (int64_t c2 = 0; c2 < L; ++c2) acc += o_lat[c2] * heads[h].v[d * L + c2];
        oh[d] = float(acc);
      }
    }
  }
}

void mla_attention_naive(const MlaShape& s, const float* q, int64_t n, std::span<const LatentRows> ctx, float* out) {
  const auto heads = dequant_kv_b(s);
  const int64_t L = s.kv_lora_rank, R = s.qk_rope_head_dim, row = s.cache_row();
  const int64_t nope = s.qk_nope_head_dim, vd = s.v_head_dim;
  std::vector<float> tmp(static_cast<size_t>(row));
  for (int64_t i = 0; i < n; ++i) {
    const LatentRows& c = ctx[size_t(i)];
    for (int64_t h = 0; h < s.n_heads; ++h) {
      // Expand this head's keys [k_nope | k_pe] and values from every cached latent.
      std::vector<float> k(size_t(c.n_ctx * (nope + R))), v(static_cast<size_t>(c.n_ctx * vd));
      for (int64_t t = 0; t < c.n_ctx; ++t) {
        const float* kv = c.row_f32(t, row, tmp.data());
        for (int64_t d = 0; d < nope; ++d) {
          double acc = 0;
          for (int64_t c2 = 0; c2 < L; ++c2) acc += double(kv[c2]) * heads[h].k[d * L + c2];
          k[t * (nope + R) + d] = float(acc);
        }
        for (int64_t r = 0; r < R; ++r) k[t * (nope + R) + nope + r] = kv[L + r];
        for (int64_t d = 0; d < vd; ++d) {
          double acc = 0;
          for (int64_t c2 = 0; c2 < L; ++c2) acc += double(kv[c2]) * heads[h].v[d * L + c2];
          v[t * vd + d] = float(acc);
        }
      }
      const float* qh = q + (i * s.n_heads + h) * s.qk_head_dim();
      std::vector<double> p(static_cast<size_t>(c.n_ctx));
      for (int64_t t = 0; t < c.n_ctx; ++t) {
        double acc = 0;
        for (int64_t d = 0; d < nope + R; ++d) acc += double(qh[d]) * k[t * (nope + R) + d];
        p[t] = acc * s.softmax_scale;
      }
      softmax(p);
      float* oh = out + (i * s.n_heads + h) * vd;
      for (int64_t d = 0; d < vd; ++d) {
        double acc = 0;
        for (int64_t t = 0; t < c.n_ctx; ++t) acc += p[t] * v[t * vd + d];
        oh[d] = float(acc);
      }
    }
  }
}

}  // namespace dsv3::ref
