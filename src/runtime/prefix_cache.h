// Automatic prefix caching over the block pool (vLLM's automatic prefix caching, SGLang's
// RadixAttention; SERVER.md §3.2): every full block a sequence has written is indexed by a
// chained hash of (the previous block's key, the block's token ids, a namespace), so a later
// prompt that starts with the same tokens takes those blocks by reference instead of prefilling
// them. The namespace keeps apart what must never share: another model, another cache dtype,
// another `cache_salt` (a request's own, OpenAI/vLLM field). A hit is confirmed by comparing the
// stored token ids, and by checking that the block was written after exactly the block matched
// before it (its id and allocation), so a hash collision can only cost a miss, never a wrong row.
// Blocks stay indexed after their requests finish, until the pool evicts them (least recently
// released first; model/kv_cache.h).
//
// Not thread-safe: the thread that steps the model owns it (with the pool).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "model/kv_cache.h"

namespace dsv3 {

class PrefixCache {
 public:
  // namespace_key: what separates caches of different models and cache dtypes (the caller hashes
  // its model's identity; see prefix_namespace). key_mask keeps only some bits of every key: tests
  // set it small to force collisions.
  PrefixCache(std::shared_ptr<BlockPool> pool, uint64_t namespace_key, uint64_t key_mask = ~uint64_t(0));
  ~PrefixCache();
  PrefixCache(const PrefixCache&) = delete;
  PrefixCache& operator=(const PrefixCache&) = delete;

  // The seed of a request's chain: the namespace and its cache_salt ("" for none).
  uint64_t chain_seed(std::string_view salt) const;
  // Key of the block holding `tokens` (block_size ids) after the block keyed `parent` (0 for the
  // first block), in the chain `seed`.
  uint64_t block_key(uint64_t seed, uint64_t parent, std::span<const int32_t> tokens) const;

  // The cached blocks that hold the longest prefix of `tokens` made of whole blocks, at most
  // max_tokens tokens, each retained once for the caller (adopt them into a SequenceCache, which
  // releases them). keys (optional) receives their keys, in order. need_mtp_rows: only blocks
  // indexed with their MTP layer's rows (the prefix ends at the first block without).
  std::vector<int32_t> match(uint64_t seed, std::span<const int32_t> tokens, int64_t max_tokens,
                             std::vector<uint64_t>* keys = nullptr, bool need_mtp_rows = false);

  // Indexes block `block` (full, every main layer's rows written) as holding `tokens` after
  // parent_block (its predecessor in the sequence's block table, -1 for the first block), whose
  // key is `parent` (0 for none); returns this block's key. Nothing is indexed when another block
  // already holds the key, or when the parent is not the indexed block of that key (then the
  // chain stops here for this sequence; its blocks stay private to it).
  // mtp_rows: the block's MTP-layer rows are written too (row j from state j and token j + 1; the
  // block's last row used the token after the block in the writing sequence).
  uint64_t insert(uint64_t seed, uint64_t parent, int32_t parent_block, std::span<const int32_t> tokens,
                  int32_t block, bool mtp_rows = false);
  // Whether block b is indexed (under some key).
  bool indexed(int32_t b) const { return size_t(b) < entries_.size() && entries_[size_t(b)].live; }

  int64_t n_indexed() const { return int64_t(by_key_.size()); }
  const BlockPool& pool() const { return *pool_; }

 private:
  struct Entry {
    uint64_t key = 0, parent = 0, seed = 0;
    int32_t parent_block = -1;
    uint32_t parent_generation = 0, generation = 0;  // allocations of the parent and of the block
    std::vector<int32_t> tokens;
    bool live = false;
    bool mtp_rows = false;
  };
  void forget(int32_t block);  // the pool evicts it

  std::shared_ptr<BlockPool> pool_;
  uint64_t namespace_key_, key_mask_;
  std::unordered_map<uint64_t, int32_t> by_key_;
  std::vector<Entry> entries_;  // per block id
};

// A namespace key from what identifies a model's cache rows: the checkpoint (its path and
// config text, say) and the cache dtype.
uint64_t prefix_namespace(std::string_view model_identity, CacheDtype dtype);

}  // namespace dsv3
