#include "ops/reference/reference.h"

#include "base/dtype.h"

namespace dsv3 {

const float* LatentRows::row_f32(int64_t j, int64_t row_values, float* tmp) const {
  const void* p = row(j, row_values);
  if (dtype == CacheDtype::F32) return static_cast<const float*>(p);
  const auto* b = static_cast<const uint16_t*>(p);
  for (int64_t k = 0; k < row_values; ++k) tmp[k] = bf16_to_f32(b[k]);
  return tmp;
}

void ReferenceBackend::embed(const Weight& table, std::span<const int32_t> ids, float* out) {
  ref::embed(table, ids, out);
}
void ReferenceBackend::rms_norm(const float* x, int64_t n, const Weight& w, float eps, float* out) {
  ref::rms_norm(x, n, w, eps, out);
}
void ReferenceBackend::linear(const Weight& w, const float* x, int64_t n, float* y) { ref::linear(w, x, n, y); }
void ReferenceBackend::rope(float* x, int64_t n, int64_t token_stride, int64_t n_vec, int64_t vec_stride,
                            int64_t rope_dim, const int32_t* pos, const float* inv_freq) {
  ref::rope(x, n, token_stride, n_vec, vec_stride, rope_dim, pos, inv_freq);
}
void ReferenceBackend::mla_attention(const MlaShape& s, const float* q, int64_t n, std::span<const LatentRows> ctx,
                                     float* out, bool absorbed) {
  if (absorbed)
    ref::mla_attention_absorbed(s, q, n, ctx, out);
  else
    ref::mla_attention_naive(s, q, n, ctx, out);
}
void ReferenceBackend::moe_route(const RouteShape& s, const float* logits, int64_t n, int32_t* experts,
                                 float* weights) {
  ref::moe_route(s, logits, n, experts, weights);
}
void ReferenceBackend::moe(const MoeWeights& w, const float* x, int64_t n, const int32_t* experts,
                           const float* weights, int64_t top_k, float* out) {
  ref::moe(w, x, n, experts, weights, top_k, out);
}
void ReferenceBackend::mlp(const MlpWeights& w, const float* x, int64_t n, float* out) { ref::mlp(w, x, n, out); }
void ReferenceBackend::add(float* y, const float* x, int64_t count) {
  for (int64_t i = 0; i < count; ++i) y[i] += x[i];
}

}  // namespace dsv3
