// The op set the model may call. Ops are coarse (a whole linear layer, a whole MLA attention
// over the latent cache, a whole MoE FFN) so that a backend can schedule threads, SIMD or a
// GPU inside them. All activations are f32, row-major, contiguous unless a stride is given.
// reference/ holds scalar implementations that every faster backend is tested against.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "io/model_config.h"
#include "weights/model_weights.h"

namespace dsv3 {

// One MLA layer's shapes (model.py MLA) and its kv_b_proj, which absorbed attention folds into
// the query ([k_nope rows] per head) and the output ([v rows] per head).
struct MlaShape {
  int64_t n_heads = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;
  int64_t kv_lora_rank = 0;
  float softmax_scale = 1.0f;
  const Weight* kv_b_proj = nullptr;  // [n_heads * (qk_nope + v), kv_lora_rank]

  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  int64_t cache_row() const { return kv_lora_rank + qk_rope_head_dim; }
};

// Element type of the latent cache's rows (--kv-cache-dtype). BF16 rows are rounded to nearest
// even when written and widened exactly when read (DeepSeek's demo keeps its cache in BF16).
enum class CacheDtype : uint8_t { F32, BF16 };
inline int64_t cache_dtype_size(CacheDtype t) { return t == CacheDtype::F32 ? 4 : 2; }
inline const char* cache_dtype_name(CacheDtype t) { return t == CacheDtype::F32 ? "f32" : "bf16"; }

// What one query token attends to: cache rows 0..n_ctx-1 of its sequence in this layer, each
// row [kv_norm(c_kv) (kv_lora_rank) | rotated k_pe (qk_rope_head_dim)]. Either contiguous f32
// rows (`rows`, blocks == nullptr: tests and tools), or paged (the block pool, model/kv_cache.h):
// row j lives in block blocks[j / block_size] at offset j % block_size, at
//   data + (blocks[j / block_size] * block_size + j % block_size) * row_values * cache_dtype_size(dtype).
struct LatentRows {
  const float* rows = nullptr;
  int64_t n_ctx = 0;
  const int32_t* blocks = nullptr;  // the sequence's block table (paged)
  const std::byte* data = nullptr;  // the layer's block storage (paged)
  int64_t block_size = 0;
  CacheDtype dtype = CacheDtype::F32;

  // Address of row j (row_values = kv_lora_rank + qk_rope_head_dim), in `dtype`.
  const void* row(int64_t j, int64_t row_values) const {
    if (!blocks) return rows + j * row_values;
    const int64_t b = blocks[j / block_size];
    return data + (b * block_size + j % block_size) * row_values * cache_dtype_size(dtype);
  }
  // Row j as f32: the row itself, or `tmp` (row_values floats) holding it widened.
  const float* row_f32(int64_t j, int64_t row_values, float* tmp) const;
  // Both describe the same sequence's rows (same storage and block table).
  bool same_rows(const LatentRows& o) const { return rows == o.rows && blocks == o.blocks && data == o.data; }
};

struct RouteShape {
  int64_t n_routed_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t n_group = 1;
  int64_t topk_group = 1;
  ScoringFunc scoring_func = ScoringFunc::Softmax;
  TopkMethod topk_method = TopkMethod::Greedy;
  bool norm_topk_prob = false;
  float routed_scaling_factor = 1.0f;
  const Weight* e_score_correction_bias = nullptr;  // noaux_tc only
};

class Backend {
 public:
  virtual ~Backend() = default;

  // out [n, table.cols] = rows ids[i] of the table.
  virtual void embed(const Weight& table, std::span<const int32_t> ids, float* out) = 0;
  // out[i] = x[i] * rsqrt(mean(x[i]^2) + eps) * w, for n rows of w.cols values (in place allowed).
  virtual void rms_norm(const float* x, int64_t n, const Weight& w, float eps, float* out) = 0;
  // y [n, w.rows] = x [n, w.cols] · Wᵀ.
  virtual void linear(const Weight& w, const float* x, int64_t n, float* y) = 0;
  // Rotates adjacent pairs (2i, 2i+1) of the rope_dim values at x + t*token_stride + v*vec_stride
  // (v < n_vec) by angle pos[t] * inv_freq[i] (model.py apply_rotary_emb).
  virtual void rope(float* x, int64_t n, int64_t token_stride, int64_t n_vec, int64_t vec_stride, int64_t rope_dim,
                    const int32_t* pos, const float* inv_freq) = 0;
  // q [n, n_heads, qk_head_dim] (rope part rotated) -> out [n, n_heads * v_head_dim].
  // absorbed: scores and values computed against the latent rows, kv_b_proj folded into q and
  // out; naive: per-head keys and values expanded from the latent rows first.
  virtual void mla_attention(const MlaShape& s, const float* q, int64_t n, std::span<const LatentRows> ctx,
                             float* out, bool absorbed) = 0;
  // Router: logits [n, n_routed_experts] -> experts [n, top_k] (in selection order) and their
  // weights [n, top_k] (model.py Gate.forward with the config's routing settings).
  virtual void moe_route(const RouteShape& s, const float* logits, int64_t n, int32_t* experts, float* weights) = 0;
  // out [n, hidden] = Σ_k weights[i,k] · expert_{experts[i,k]}(x[i]) summed in expert-index
  // order, plus the shared experts (model.py MoE.forward).
  // experts[] are global expert ids; picks outside [w.expert_begin, w.expert_begin +
  // w.experts.size()) belong to another rank and add nothing here (the model all-reduces).
  virtual void moe(const MoeWeights& w, const float* x, int64_t n, const int32_t* experts, const float* weights,
                   int64_t top_k, float* out) = 0;
  // out [n, hidden] = down(silu(gate(x)) * up(x)).
  virtual void mlp(const MlpWeights& w, const float* x, int64_t n, float* out) = 0;
  // y += x, count values.
  virtual void add(float* y, const float* x, int64_t count) = 0;
};

}  // namespace dsv3
