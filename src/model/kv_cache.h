// The latent KV cache, paged: every sequence's rows live in fixed-size blocks of one BlockPool
// (vLLM's PagedAttention layout, applied to MLA's latent). A block holds `block_size` positions
// of every cache layer (the MTP layer included); a SequenceCache is a block table over the pool.
// Cache the latent (kv_lora_rank + qk_rope_head_dim = 576 values per token per layer for V3)
// instead of per-head K and V (128 × (192 + 128) = 40 960): this is what makes long contexts fit.
//
// Blocks are reference counted: the `n` choices of one request and requests with a common
// prompt prefix (runtime/prefix_cache.h) share them, and a shared block is copied before it is
// written (copy on write). An unreferenced block that the prefix cache keeps is "evictable": it
// stays until a new block is needed and no free one is left, least recently released first.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "ops/backend.h"

namespace dsv3 {

struct CacheLayout {
  int64_t n_layers = 0;     // main layers, plus the MTP layer when loaded
  int64_t row = 0;          // values per position and layer: kv_lora_rank + qk_rope_head_dim
  int64_t block_size = 64;  // positions per block
  CacheDtype dtype = CacheDtype::F32;

  int64_t row_bytes() const { return row * cache_dtype_size(dtype); }
  int64_t token_bytes() const { return n_layers * row_bytes(); }
  int64_t block_bytes() const { return block_size * token_bytes(); }
};

class BlockPool {
 public:
  // n_blocks > 0: a fixed pool of that many blocks, its memory allocated and touched at once (the
  // process's size does not grow afterwards). n_blocks == 0: a growable pool that never runs out (tests,
  // tools, chat and generate without --kv-cache-mb). Throws Error for a bad layout.
  BlockPool(CacheLayout layout, int64_t n_blocks);
  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;

  const CacheLayout& layout() const { return layout_; }
  int64_t block_size() const { return layout_.block_size; }
  bool growable() const { return growable_; }
  int64_t n_blocks() const { return int64_t(refs_.size()); }
  int64_t n_free() const { return int64_t(free_.size()); }  // unused and not cached
  int64_t n_evictable() const { return n_evictable_; }     // unreferenced, kept for prefix reuse
  int64_t n_used() const { return n_blocks() - n_free() - n_evictable(); }  // referenced
  // Blocks allocate() can still hand out (free or evictable); a growable pool has no limit.
  int64_t n_available() const;
  uint64_t bytes() const { return uint64_t(n_blocks()) * uint64_t(layout_.block_bytes()); }

  // A block with one reference, or -1 when a fixed pool has none free or evictable. With no free
  // block, the least recently released evictable block is evicted (the evict hook runs first).
  int32_t allocate();
  // Another reference to b (an evictable block becomes used again).
  void retain(int32_t b);
  // Drops one reference; at zero the block becomes evictable when cached, free otherwise.
  void release(int32_t b);
  int32_t refs(int32_t b) const { return refs_[size_t(b)]; }
  // Counts the allocations of block b (a reused id is told apart from its earlier use).
  uint32_t generation(int32_t b) const { return generation_[size_t(b)]; }
  // The prefix cache marks the blocks it indexes; unmarking an evictable block frees it.
  void set_cached(int32_t b, bool cached);
  bool cached(int32_t b) const { return cached_[size_t(b)] != 0; }
  // Runs with each block about to be evicted (the prefix index forgets it). One hook per pool.
  void set_evict_hook(std::function<void(int32_t)> hook) { on_evict_ = std::move(hook); }
  // Runs after each copy_rows (dst, src, n_rows): a tensor-parallel server's rank 0 tells the
  // other ranks, whose pools mirror this one (runtime/step_mirror.h). One hook per pool.
  void set_copy_hook(std::function<void(int32_t, int32_t, int64_t)> hook) { on_copy_ = std::move(hook); }

  // Layer il's storage: [n_blocks][block_size][row] values of layout().dtype.
  const std::byte* layer_data(int64_t il) const { return layers_[size_t(il)].get(); }
  // Writes one position's row (f32 values, rounded to nearest even for BF16).
  void write_row(int64_t il, int32_t b, int64_t offset, const float* values);
  // Copies the first n_rows positions of every layer from block src to block dst.
  void copy_rows(int32_t dst, int32_t src, int64_t n_rows);

 private:
  void grow(int64_t n_blocks);
  void unlink(int32_t b);  // out of the evictable list
  CacheLayout layout_;
  bool growable_;
  // Page-aligned storage (an unaligned base made every SIMD load of a row straddle cache lines:
  // decode attention ~14% slower).
  struct AlignedFree {
    void operator()(std::byte* p) const;
  };
  std::vector<std::unique_ptr<std::byte[], AlignedFree>> layers_;
  std::vector<int32_t> refs_;
  std::vector<uint8_t> cached_;
  std::vector<uint32_t> generation_;
  std::vector<int32_t> free_;  // a stack; lowest ids on top at start
  // Evictable blocks, a doubly linked list in release order (head = least recent).
  std::vector<int32_t> prev_, next_;
  int32_t head_ = -1, tail_ = -1;
  int64_t n_evictable_ = 0;
  std::function<void(int32_t)> on_evict_;
  std::function<void(int32_t, int32_t, int64_t)> on_copy_;
};

// One sequence's cache: its block table over a pool, and how many positions of each layer are
// written. Not thread-safe (the pool neither): one thread steps the model.
class SequenceCache {
 public:
  explicit SequenceCache(std::shared_ptr<BlockPool> pool);
  ~SequenceCache() { clear(); }
  // A cache over a block table that another process manages: a tensor-parallel rank replaying
  // rank 0's step on a pool of the same layout (runtime/step_mirror.h). `blocks` are rank 0's
  // block ids and `lengths` [n_layers] its written positions per layer. It holds no references;
  // every position inside its blocks is writable as is (rank 0 made the step's positions
  // exclusive before it ran). Not copyable.
  static SequenceCache borrowed(std::shared_ptr<BlockPool> pool, std::span<const int32_t> blocks,
                                std::span<const int64_t> lengths);
  // A copy shares every block (a write to a shared block copies it first).
  SequenceCache(const SequenceCache& o);
  SequenceCache& operator=(const SequenceCache&) = delete;
  SequenceCache(SequenceCache&& o) noexcept;
  SequenceCache& operator=(SequenceCache&& o) noexcept;

  BlockPool& pool() const { return *pool_; }
  const std::shared_ptr<BlockPool>& shared_pool() const { return pool_; }
  int64_t n_layers() const { return int64_t(lengths_.size()); }
  int64_t row_size() const { return pool_->layout().row; }
  int64_t block_size() const { return pool_->block_size(); }
  int64_t capacity() const { return int64_t(blocks_.size()) * block_size(); }  // positions with a block
  std::span<const int32_t> blocks() const { return blocks_; }
  // Rows written so far in layer il (positions 0 .. length-1 are valid).
  int64_t length(int64_t il) const { return lengths_[size_t(il)]; }

  // Blocks for positions [0, n_tokens). false when a fixed pool ran out (what it got is kept).
  bool try_reserve(int64_t n_tokens);
  // The same; throws Error naming the pool's size when it ran out.
  void reserve(int64_t n_tokens);
  // Makes position pos writable in every layer: a block for it, copied first when another
  // sequence or the prefix cache holds it too. false when a fixed pool ran out.
  bool try_make_writable(int64_t pos);
  // New blocks try_make_writable would take for positions [from, to) (reserve + copy on write).
  int64_t blocks_to_write(int64_t from, int64_t to) const;

  // Writes position pos of layer il (f32 values; the position must be writable).
  void write_row(int64_t il, int64_t pos, const float* values);
  // Marks position pos of layer il written (pos <= length(il): no gaps).
  void mark_written(int64_t il, int64_t pos);
  // What attention reads: layer il's positions [0, n_ctx).
  LatentRows view(int64_t il, int64_t n_ctx) const;
  // Forgets positions >= n in every layer (their blocks stay with the sequence).
  void truncate(int64_t n);
  // The same in layer il only (speculative decoding rolls the MTP layer back on its own).
  void truncate_layer(int64_t il, int64_t n) { lengths_[size_t(il)] = std::min(lengths_[size_t(il)], n); }
  // Takes `blocks` (one more reference each) as the start of an empty cache, holding positions
  // [0, n_tokens) in layers [0, n_layers_filled) (a prefix cache hit).
  void adopt(std::span<const int32_t> blocks, int64_t n_tokens, int64_t n_layers_filled);
  // Releases every block, the last first (so that a prompt's tail is evicted before its head).
  void clear();
  uint64_t bytes() const { return uint64_t(blocks_.size()) * uint64_t(pool_->layout().block_bytes()); }

 private:
  std::shared_ptr<BlockPool> pool_;
  std::vector<int32_t> blocks_;
  std::vector<int64_t> lengths_;
  bool borrowed_ = false;  // see borrowed(): no references held, no copy on write
};

}  // namespace dsv3
