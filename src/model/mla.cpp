// Multi-head Latent Attention (model.py MLA.forward): queries through q LoRA (or q_proj), the
// compressed latent and the shared rotary key into the cache, attention over the cache.
#include <algorithm>

#include "base/error.h"
#include "model/model.h"
#include "model/scratch.h"

namespace dsv3 {

void Model::attention(const AttentionWeights& aw, int64_t il, const float* h, float* out,
                      std::span<const StepEntry> entries, std::span<SequenceCache* const> caches, bool absorbed) {
  const ModelConfig& c = config_;
  const int64_t n = int64_t(entries.size());
  const int64_t nh = mla_shape_.n_heads, qk = c.qk_head_dim(), L = c.kv_lora_rank, R = c.qk_rope_head_dim;
  const float eps = float(c.rms_norm_eps);
  int32_t* pos = grow(positions_, n);
  for (int64_t i = 0; i < n; ++i) pos[i] = entries[size_t(i)].pos;

  // q [n, nh, nope + rope] (nh: this rank's heads) = q_b_proj(q_a_layernorm(q_a_proj(h))), or q_proj(h).
  float* q = grow(q_, n * nh * qk);
  if (c.q_lora_rank > 0) {
    float* qa = grow(qa_, n * c.q_lora_rank);
    backend_.linear(aw.q_a_proj, h, n, qa);
    backend_.rms_norm(qa, n, aw.q_a_layernorm, eps, qa);
    backend_.linear(aw.q_b_proj, qa, n, q);
  } else {
    backend_.linear(aw.q_proj, h, n, q);
  }
  backend_.rope(q + c.qk_nope_head_dim, n, nh * qk, nh, qk, R, pos, inv_freq_.data());

  // kv [n, L + R] = kv_a_proj_with_mqa(h) = [c_kv | k_pe]; the cache keeps kv_norm(c_kv) and
  // the rotated k_pe, shared by all heads.
  float* kv = grow(kv_, n * (L + R));
  backend_.linear(aw.kv_a_proj_with_mqa, h, n, kv);
  for (int64_t i = 0; i < n; ++i) backend_.rms_norm(kv + i * (L + R), 1, aw.kv_a_layernorm, eps, kv + i * (L + R));
  backend_.rope(kv + L, n, L + R, 1, 0, R, pos, inv_freq_.data());
  for (int64_t i = 0; i < n; ++i) {
    SequenceCache& cache = *caches[size_t(entries[size_t(i)].seq)];
    cache.write_row(il, pos[i], kv + i * (L + R));
    cache.mark_written(il, pos[i]);
  }

  // Every entry sees its own sequence's positions 0..pos: causal within a prefill, the whole
  // cache in decode, and the right prefix in a mixed batch.
  LatentRows* ctx = grow(ctx_, n);
  for (int64_t i = 0; i < n; ++i) ctx[i] = caches[size_t(entries[size_t(i)].seq)]->view(il, pos[i] + 1);
  MlaShape shape = mla_shape_;
  shape.kv_b_proj = &aw.kv_b_proj;
  float* o = grow(o_, n * nh * c.v_head_dim);
  backend_.mla_attention(shape, q, n, std::span<const LatentRows>(ctx, size_t(n)), o, absorbed);
  backend_.linear(aw.o_proj, o, n, out);  // this rank's heads' part (model.py RowParallelLinear wo)
  comm_.all_reduce_sum(out, n * c.hidden_size);
}

}  // namespace dsv3
