// The latent KV cache of one sequence, every layer (MTP included).
// Cache the latent (kv_lora_rank + qk_rope_head_dim = 576 values per token per layer for V3)
// instead of per-head K and V (128 × (192 + 128) = 40 960): this is what makes long contexts fit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace dsv3 {

class SequenceCache {
 public:
  // row = kv_lora_rank + qk_rope_head_dim; capacity in tokens, grown on demand.
  SequenceCache(int64_t n_layers, int64_t row, int64_t capacity = 0);

  int64_t n_layers() const { return int64_t(layers_.size()); }
  int64_t row_size() const { return row_; }
  int64_t capacity() const { return capacity_; }
  // Ensures room for positions [0, n_tokens) in every layer (allocates; call before decoding).
  void reserve(int64_t n_tokens);
  // Rows written so far in layer il (positions 0 .. length-1 are valid).
  int64_t length(int64_t il) const { return lengths_[size_t(il)]; }
  float* row(int64_t il, int64_t pos) { return layers_[size_t(il)].data() + pos * row_; }
  const float* rows(int64_t il) const { return layers_[size_t(il)].data(); }
  // Marks position pos of layer il written (pos <= length(il): no gaps).
  void mark_written(int64_t il, int64_t pos);
  // Forgets positions >= n in every layer (speculative decoding rolls back rejected tokens).
  void truncate(int64_t n);
  uint64_t bytes() const;

 private:
  int64_t row_;
  int64_t capacity_ = 0;
  std::vector<std::vector<float>> layers_;
  std::vector<int64_t> lengths_;
};

}  // namespace dsv3
