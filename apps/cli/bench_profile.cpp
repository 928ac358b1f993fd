#include "apps/cli/bench_profile.h"

#include <set>

namespace dsv3::cli {

namespace {

double bytes_of(const Weight& w) { return w.present() ? double(w.bytes()) : 0.0; }
double bytes_of(const MlpWeights& m) { return bytes_of(m.gate_proj) + bytes_of(m.up_proj) + bytes_of(m.down_proj); }

// "model.layers.7.self_attn.q_a_proj.weight" -> "q_a_proj"; "lm_head.weight" -> "lm_head".
std::string short_name(const std::string& name) {
  std::string s = name;
  if (s.size() > 7 && s.compare(s.size() - 7, 7, ".weight") == 0) s.resize(s.size() - 7);
  const size_t dot = s.rfind('.');
  return dot == std::string::npos ? s : s.substr(dot + 1);
}

}  // namespace

void ProfilingBackend::embed(const Weight& table, std::span<const int32_t> ids, float* out) {
  timed("embed", double(ids.size()) * double(table.cols) * double(dtype_size(table.dtype)),
        [&] { inner_.embed(table, ids, out); });
}

void ProfilingBackend::rms_norm(const float* x, int64_t n, const Weight& w, float eps, float* out) {
  timed("rms_norm", bytes_of(w), [&] { inner_.rms_norm(x, n, w, eps, out); });
}

void ProfilingBackend::linear(const Weight& w, const float* x, int64_t n, float* y) {
  timed("linear " + short_name(w.name), bytes_of(w), [&] { inner_.linear(w, x, n, y); });
}

void ProfilingBackend::rope(float* x, int64_t n, int64_t token_stride, int64_t n_vec, int64_t vec_stride,
                            int64_t rope_dim, const int32_t* pos, const float* inv_freq) {
  timed("rope", 0, [&] { inner_.rope(x, n, token_stride, n_vec, vec_stride, rope_dim, pos, inv_freq); });
}

void ProfilingBackend::mla_attention(const MlaShape& s, const float* q, int64_t n, std::span<const LatentRows> ctx,
                                     float* out, bool absorbed) {
  // Each distinct sequence's rows once (a sequence's tokens share them), and kv_b_proj.
  double bytes = s.kv_b_proj ? bytes_of(*s.kv_b_proj) : 0.0;
  for (size_t i = 0; i < ctx.size(); ++i)
    if (i + 1 == ctx.size() || !ctx[i].same_rows(ctx[i + 1]))
      bytes += double(ctx[i].n_ctx) * double(s.cache_row()) * double(cache_dtype_size(ctx[i].dtype));
  timed("mla_attention", bytes, [&] { inner_.mla_attention(s, q, n, ctx, out, absorbed); });
}

void ProfilingBackend::moe_route(const RouteShape& s, const float* logits, int64_t n, int32_t* experts,
                                 float* weights) {
  timed("moe_route", 0, [&] { inner_.moe_route(s, logits, n, experts, weights); });
}

void ProfilingBackend::moe(const MoeWeights& w, const float* x, int64_t n, const int32_t* experts,
                           const float* weights, int64_t top_k, float* out) {
  double bytes = w.shared_experts ? bytes_of(*w.shared_experts) : 0.0;
  for (int32_t e : std::set<int32_t>(experts, experts + n * top_k)) bytes += bytes_of(w.experts[size_t(e)]);
  timed("moe (routed + shared experts)", bytes, [&] { inner_.moe(w, x, n, experts, weights, top_k, out); });
}

void ProfilingBackend::mlp(const MlpWeights& w, const float* x, int64_t n, float* out) {
  timed("mlp (dense layers)", bytes_of(w), [&] { inner_.mlp(w, x, n, out); });
}

void ProfilingBackend::add(float* y, const float* x, int64_t count) {
  timed("add", 0, [&] { inner_.add(y, x, count); });
}

}  // namespace dsv3::cli
