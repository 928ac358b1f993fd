#include "model/model.h"
#include "model/scratch.h"

#include <algorithm>

#include "base/error.h"

namespace dsv3 {

Model::Model(const ModelConfig& config, const ModelWeights& weights, Backend& backend)
    : Model(config, weights, backend, local_comm_) {}

Model::Model(const ModelConfig& config, const ModelWeights& weights, Backend& backend, Comm& comm)
    : config_(config),
      weights_(weights),
      backend_(backend),
      comm_(comm),
      plan_(ShardPlan::make(config, comm.rank(), comm.size())),
      inv_freq_(config.rope_inv_freq()) {
  // Per-rank dimensions: this rank's heads (model.py MLA.n_local_heads).
  const int64_t kvb = config.qk_nope_head_dim + config.v_head_dim;
  for (const auto& l : weights.layers)
    if (l.self_attn.kv_b_proj.present() && l.self_attn.kv_b_proj.rows != plan_.heads.count() * kvb)
      fail("'{}' has {} rows; rank {} of {} expects {} ({} heads): the weights were cut for another world size",
           l.self_attn.kv_b_proj.name, l.self_attn.kv_b_proj.rows, comm.rank(), comm.size(),
           plan_.heads.count() * kvb, plan_.heads.count());
  mla_shape_ = MlaShape{.n_heads = plan_.heads.count(),
                        .qk_nope_head_dim = config.qk_nope_head_dim,
                        .qk_rope_head_dim = config.qk_rope_head_dim,
                        .v_head_dim = config.v_head_dim,
                        .kv_lora_rank = config.kv_lora_rank,
                        .softmax_scale = float(config.softmax_scale())};
  route_shape_ = RouteShape{.n_routed_experts = config.n_routed_experts,
                            .num_experts_per_tok = config.num_experts_per_tok,
                            .n_group = config.n_group,
                            .topk_group = config.topk_group,
                            .scoring_func = config.scoring_func,
                            .topk_method = config.topk_method,
                            .norm_topk_prob = config.norm_topk_prob,
                            .routed_scaling_factor = float(config.routed_scaling_factor)};
}

void Model::validate(std::span<const StepEntry> entries, std::span<SequenceCache* const> caches) const {
  for (const auto& e : entries) {
    if (e.seq < 0 || size_t(e.seq) >= caches.size()) fail("step entry names sequence {} of {}", e.seq, caches.size());
    if (e.token < 0 || e.token >= config_.vocab_size)
      fail("token id {} is out of range; the vocabulary has {} ids (0..{})", e.token, config_.vocab_size,
           config_.vocab_size - 1);
    if (e.pos < 0) fail("position {} is negative", e.pos);
  }
  // A sequence's positions in one step must continue its cache without gaps.
  // Reused scratch (validate runs every decode step, which must not allocate).
  int64_t* next = grow(next_pos_, int64_t(caches.size()));
  for (size_t s = 0; s < caches.size(); ++s) next[s] = caches[s] ? caches[s]->length(0) : 0;
  for (const auto& e : entries) {
    if (!caches[size_t(e.seq)]) fail("sequence {} has no cache", e.seq);
    if (e.pos > next[size_t(e.seq)])
      fail("sequence {}: position {} leaves a gap (the cache holds {} positions)", e.seq, e.pos,
           next[size_t(e.seq)]);
    next[size_t(e.seq)] = std::max<int64_t>(next[size_t(e.seq)], e.pos + 1);
  }
}

void Model::make_writable(SequenceCache& cache, int64_t pos) const {
  if (!cache.try_make_writable(pos))
    fail("the KV cache pool is full: position {} needs a block and none of its {} blocks of {} tokens is free",
         pos, cache.pool().n_blocks(), cache.block_size());
}

CacheLayout Model::cache_layout(int64_t block_size, CacheDtype dtype) const {
  return CacheLayout{.n_layers = cache_layers(), .row = cache_row(), .block_size = block_size, .dtype = dtype};
}

SequenceCache Model::new_cache(int64_t capacity, CacheDtype dtype) const {
  constexpr int64_t kBlock = 64;
  const int64_t blocks = (capacity + kBlock - 1) / kBlock;
  // A private growable pool with room for `capacity` positions from the start.
  auto pool = std::make_shared<BlockPool>(cache_layout(kBlock, dtype), 0);
  SequenceCache cache(std::move(pool));
  if (blocks > 0) cache.reserve(blocks * kBlock);
  return cache;
}

void Model::forward(std::span<const StepEntry> entries, std::span<SequenceCache* const> caches,
                    const ForwardOptions& opts, float* hidden, float* logits) {
  validate(entries, caches);
  const int64_t n = int64_t(entries.size()), H = config_.hidden_size;
  if (n == 0) return;
  for (const auto& e : entries) make_writable(*caches[size_t(e.seq)], e.pos);
  int32_t* ids = grow(ids_, n);
  for (int64_t i = 0; i < n; ++i) ids[i] = entries[size_t(i)].token;
  float* x = hidden;  // the residual stream lives in the caller's buffer [n, H]
  embed(weights_.embed_tokens, ids, n, x);
  for (int64_t il = 0; il < config_.num_hidden_layers; ++il)
    block(weights_.layers[size_t(il)], il, x, entries, caches, opts);
  backend_.rms_norm(x, n, weights_.norm, float(config_.rms_norm_eps), x);
  if (!opts.logit_rows.empty()) {
    float* rows = grow(h_, int64_t(opts.logit_rows.size()) * H);
    for (size_t r = 0; r < opts.logit_rows.size(); ++r)
      std::copy_n(x + int64_t(opts.logit_rows[r]) * H, H, rows + int64_t(r) * H);
    head(weights_.lm_head, rows, int64_t(opts.logit_rows.size()), logits);
  }
}

void Model::forward_mtp(std::span<const StepEntry> entries, const float* hidden_in,
                        std::span<SequenceCache* const> caches, const ForwardOptions& opts, float* logits,
                        float* hidden_out) {
  DSV3_CHECK(has_mtp(), "forward_mtp without MTP weights");
  const MtpWeights& m = *weights_.mtp;
  const int64_t n = int64_t(entries.size()), H = config_.hidden_size, il = config_.num_hidden_layers;
  if (n == 0) return;
  for (const auto& e : entries)
    if (e.seq < 0 || size_t(e.seq) >= caches.size() || !caches[size_t(e.seq)]) fail("MTP entry names no cache");
  for (const auto& e : entries) {
    if (e.token < 0 || e.token >= config_.vocab_size) fail("token id {} is out of range", e.token);
    make_writable(*caches[size_t(e.seq)], e.pos);
  }
  int32_t* ids = grow(ids_, n);
  for (int64_t i = 0; i < n; ++i) ids[i] = entries[size_t(i)].token;
  // x = eh_proj([enorm(embed(next token)) | hnorm(hidden)]): embedding first, then hidden.
  float* cat = grow(cat_, n * 2 * H);
  float* e = grow(a_, n * H);
  embed(m.embed_tokens, ids, n, e);
  backend_.rms_norm(e, n, m.enorm, float(config_.rms_norm_eps), e);
  float* hn = grow(h_, n * H);
  backend_.rms_norm(hidden_in, n, m.hnorm, float(config_.rms_norm_eps), hn);
  for (int64_t i = 0; i < n; ++i) {
    std::copy_n(e + i * H, H, cat + i * 2 * H);
    std::copy_n(hn + i * H, H, cat + i * 2 * H + H);
  }
  float* x = grow(mtp_x_, n * H);
  backend_.linear(m.eh_proj, cat, n, x);
  block(m.layer, il, x, entries, caches, opts);
  if (hidden_out) std::copy_n(x, n * H, hidden_out);
  if (!logits) return;
  backend_.rms_norm(x, n, m.shared_head_norm, float(config_.rms_norm_eps), x);
  if (opts.logit_rows.empty()) {
    head(m.shared_head_head, x, n, logits);
    return;
  }
  float* rows = grow(h_, int64_t(opts.logit_rows.size()) * H);
  for (size_t r = 0; r < opts.logit_rows.size(); ++r) {
    const int32_t i = opts.logit_rows[r];
    if (i < 0 || i >= n) fail("MTP logit row {} names no entry (the call has {})", i, n);
    std::copy_n(x + int64_t(i) * H, H, rows + int64_t(r) * H);
  }
  head(m.shared_head_head, rows, int64_t(opts.logit_rows.size()), logits);
}

void Model::block(const LayerWeights& lw, int64_t il, float* x, std::span<const StepEntry> entries,
                  std::span<SequenceCache* const> caches, const ForwardOptions& opts) {
  const int64_t n = int64_t(entries.size()), H = config_.hidden_size;
  const float eps = float(config_.rms_norm_eps);
  float* h = grow(h_, n * H);
  float* a = grow(a_, n * H);
  backend_.rms_norm(x, n, lw.input_layernorm, eps, h);                // attn_norm
  attention(lw.self_attn, il, h, a, entries, caches, opts.absorbed);  // MLA over the latent cache
  backend_.add(x, a, n * H);                                          // residual
  backend_.rms_norm(x, n, lw.post_attention_layernorm, eps, h);       // ffn_norm
  ffn(lw, il, h, a, n, opts.trace);                                   // dense MLP or MoE
  backend_.add(x, a, n * H);                                          // residual
}

void Model::embed(const Weight& table, const int32_t* ids, int64_t n, float* out) {
  const int64_t H = config_.hidden_size;
  if (!plan_.sharded()) {
    backend_.embed(table, std::span<const int32_t>(ids, size_t(n)), out);
    return;
  }
  int32_t* local = grow(local_ids_, n);
  int64_t m = 0;
  for (int64_t i = 0; i < n; ++i)
    if (plan_.vocab.contains(ids[i])) local[m++] = int32_t(ids[i] - plan_.vocab.begin);
  float* rows = grow(embed_rows_, std::max<int64_t>(m, 1) * H);
  if (m > 0) backend_.embed(table, std::span<const int32_t>(local, size_t(m)), rows);
  for (int64_t i = 0, j = 0; i < n; ++i) {
    if (plan_.vocab.contains(ids[i]))
      std::copy_n(rows + j++ * H, H, out + i * H);
    else
      std::fill_n(out + i * H, H, 0.0f);
  }
  comm_.all_reduce_sum(out, n * H);
}

void Model::head(const Weight& w, const float* x, int64_t n, float* logits) {
  if (!plan_.sharded()) {
    backend_.linear(w, x, n, logits);
    return;
  }
  // Ranks hold vocabulary ranges of (possibly) different lengths: gather equal chunks of the
  // longest, then place each rank's columns.
  const int64_t V = config_.vocab_size, world = plan_.world;
  const int64_t chunk = (V + world - 1) / world;
  float* mine = grow(head_local_, n * chunk);
  backend_.linear(w, x, n, mine);  // [n, vocab.count()]
  float* all = grow(head_all_, world * n * chunk);
  comm_.all_gather(mine, n * chunk * int64_t(sizeof(float)), all);
  for (int64_t r = 0; r < world; ++r) {
    const Range v = split_range(V, 1, int(r), int(world));
    const float* src = all + r * n * chunk;
    for (int64_t i = 0; i < n; ++i) std::copy_n(src + i * v.count(), v.count(), logits + i * V + v.begin);
  }
}

}  // namespace dsv3
