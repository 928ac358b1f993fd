// The DeepSeek-V2/V3 forward pass (model.py Transformer, plus the MTP module), written against
// the Backend op set. One step takes a batch of (sequence, token, position) entries over
// per-sequence latent caches: a prefill, a decode of many sequences, or a mix, in one call.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "io/model_config.h"
#include "model/kv_cache.h"
#include "ops/backend.h"
#include "parallel/comm.h"
#include "weights/model_weights.h"
#include "weights/shard_plan.h"

namespace dsv3 {

struct StepEntry {
  int32_t seq = 0;    // index into the caches span
  int32_t token = 0;  // token id fed at this position
  int32_t pos = 0;    // its position in the sequence
};

// Experts chosen per MoE layer call, for tests and routing statistics.
struct RoutingTrace {
  struct Call {
    int64_t layer;
    std::vector<int32_t> experts;  // [n_entries, num_experts_per_tok], in selection order
    std::vector<float> weights;    // same shape
  };
  std::vector<Call> calls;
};

struct ForwardOptions {
  bool absorbed = true;                 // MLA with kv_b_proj absorbed (default) or naive per-head
  std::span<const int32_t> logit_rows;  // entries whose logits are wanted
  RoutingTrace* trace = nullptr;
};

class Model {
 public:
  Model(const ModelConfig& config, const ModelWeights& weights, Backend& backend);
  // Tensor/expert parallel: `weights` hold this rank's part (weights/shard.h, the plan of
  // ShardPlan::make(config, comm.rank(), comm.size())); every rank calls every step with the same
  // entries and gets the same hidden states and logits. Throws Error when the weights were cut
  // for another world size.
  Model(const ModelConfig& config, const ModelWeights& weights, Backend& backend, Comm& comm);

  Comm& comm() { return comm_; }
  const ShardPlan& shard_plan() const { return plan_; }

  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  bool has_mtp() const { return weights_.mtp.has_value(); }
  // Layers a SequenceCache needs (main layers, plus the MTP layer when loaded).
  int64_t cache_layers() const { return config_.num_hidden_layers + (has_mtp() ? 1 : 0); }
  int64_t cache_row() const { return config_.kv_lora_rank + config_.qk_rope_head_dim; }
  // The cache layout for this model: every cache layer, rows of cache_row() values.
  CacheLayout cache_layout(int64_t block_size, CacheDtype dtype = CacheDtype::F32) const;
  // A cache over a pool of its own that grows on demand (tests, tools), with blocks for
  // `capacity` positions taken at once. Servers share one fixed pool instead (BlockPool).
  SequenceCache new_cache(int64_t capacity = 0, CacheDtype dtype = CacheDtype::F32) const;

  // Main model. hidden [n, hidden_size] = state after the final norm (what the head sees);
  // logits [opts.logit_rows.size(), vocab_size]. Throws Error for token ids out of range,
  // positions that would leave a gap in a cache, or a fixed block pool without a block for a
  // position (the runtime checks SequenceCache::blocks_to_write first to avoid it).
  void forward(std::span<const StepEntry> entries, std::span<SequenceCache* const> caches,
               const ForwardOptions& opts, float* hidden, float* logits);

  // MTP module (layer num_hidden_layers): entry i carries the *next* token and the position of
  // the state hidden_in[i] [n, hidden_size] it extends (the main model's, after the final norm;
  // or, chained, a previous MTP call's hidden_out row). logits [rows, vocab_size]: the entries
  // opts.logit_rows names, every entry when it is empty; none when logits is null. hidden_out
  // (optional) [n, hidden_size]: the MTP block's output before shared_head.norm (SGLang's and
  // vLLM's state for chaining the module on its own drafts). Throws Error like forward().
  void forward_mtp(std::span<const StepEntry> entries, const float* hidden_in, std::span<SequenceCache* const> caches,
                   const ForwardOptions& opts, float* logits, float* hidden_out = nullptr);

 private:
  void validate(std::span<const StepEntry> entries, std::span<SequenceCache* const> caches) const;
  // A block for position pos (copied first when shared); throws Error when the pool is full.
  void make_writable(SequenceCache& cache, int64_t pos) const;
  // x [n, hidden] += attention and FFN of one decoder layer; il indexes the cache layer.
  void block(const LayerWeights& lw, int64_t il, float* x, std::span<const StepEntry> entries,
             std::span<SequenceCache* const> caches, const ForwardOptions& opts);
  void attention(const AttentionWeights& aw, int64_t il, const float* h, float* out,
                 std::span<const StepEntry> entries, std::span<SequenceCache* const> caches, bool absorbed);
  void ffn(const LayerWeights& lw, int64_t il, const float* h, float* out, int64_t n, RoutingTrace* trace);
  // out [n, hidden] = rows ids of the vocabulary-split table, summed over ranks (model.py
  // ParallelEmbedding: zero outside this rank's vocabulary range, then all-reduce).
  void embed(const Weight& table, const int32_t* ids, int64_t n, float* out);
  // logits [n, vocab_size] = x [n, hidden] · headᵀ, the vocabulary-split head's rows gathered
  // from every rank (model.py Transformer.forward: all_gather of the ColumnParallelLinear head).
  void head(const Weight& w, const float* x, int64_t n, float* logits);

  const ModelConfig& config_;
  const ModelWeights& weights_;
  Backend& backend_;
  LocalComm local_comm_;  // the communicator of the one-process constructor
  Comm& comm_;
  ShardPlan plan_;
  std::vector<float> inv_freq_;
  MlaShape mla_shape_;
  RouteShape route_shape_;
  // Step scratch, reused across calls (grows only).
  std::vector<float> h_, a_, q_, qa_, kv_, o_, gate_logits_, route_w_, cat_, mtp_x_;
  std::vector<int32_t> route_e_, positions_, ids_, local_ids_;
  std::vector<float> embed_rows_, head_local_, head_all_;
  std::vector<LatentRows> ctx_;
  mutable std::vector<int64_t> next_pos_;  // validate()
};

}  // namespace dsv3
