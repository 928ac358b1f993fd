// Scalar reference implementations of every Backend op: written for clarity, accumulating in
// double, single-threaded. Fast kernels are tested against these.
#pragma once

#include "ops/backend.h"

namespace dsv3::ref {

void embed(const Weight& table, std::span<const int32_t> ids, float* out);
void rms_norm(const float* x, int64_t n, const Weight& w, float eps, float* out);
// rms_norm's arithmetic for tokens [0, n) of width d, with the weight row g already in f32
// (backends that spread the tokens over threads call it per range).
void rms_norm_rows(const float* x, int64_t n, int64_t d, const float* g, float eps, float* out);
// Dequantises row r of w into out [w.cols] (e4m3 value * block scale in f32, as model.py's
// weight_dequant; BF16/F16 exactly).
void dequant_row(const Weight& w, int64_t r, float* out);
void linear(const Weight& w, const float* x, int64_t n, float* y);
void rope(float* x, int64_t n, int64_t token_stride, int64_t n_vec, int64_t vec_stride, int64_t rope_dim,
          const int32_t* pos, const float* inv_freq);
void mla_attention_absorbed(const MlaShape& s, const float* q, int64_t n, std::span<const LatentRows> ctx,
                            float* out);
void mla_attention_naive(const MlaShape& s, const float* q, int64_t n, std::span<const LatentRows> ctx, float* out);
void moe_route(const RouteShape& s, const float* logits, int64_t n, int32_t* experts, float* weights);
void mlp(const MlpWeights& w, const float* x, int64_t n, float* out);
void moe(const MoeWeights& w, const float* x, int64_t n, const int32_t* experts, const float* weights,
         int64_t top_k, float* out);
float silu(float x);

}  // namespace dsv3::ref

namespace dsv3 {

class ReferenceBackend : public Backend {
 public:
  void embed(const Weight& table, std::span<const int32_t> ids, float* out) override;
  void rms_norm(const float* x, int64_t n, const Weight& w, float eps, float* out) override;
  void linear(const Weight& w, const float* x, int64_t n, float* y) override;
  void rope(float* x, int64_t n, int64_t token_stride, int64_t n_vec, int64_t vec_stride, int64_t rope_dim,
            const int32_t* pos, const float* inv_freq) override;
  void mla_attention(const MlaShape& s, const float* q, int64_t n, std::span<const LatentRows> ctx, float* out,
                     bool absorbed) override;
  void moe_route(const RouteShape& s, const float* logits, int64_t n, int32_t* experts, float* weights) override;
  void moe(const MoeWeights& w, const float* x, int64_t n, const int32_t* experts, const float* weights,
           int64_t top_k, float* out) override;
  void mlp(const MlpWeights& w, const float* x, int64_t n, float* out) override;
  void add(float* y, const float* x, int64_t count) override;
};

}  // namespace dsv3
