#include "model/kv_cache.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <new>

#include "base/dtype.h"
#include "base/error.h"

namespace dsv3 {

namespace {
constexpr size_t kAlign = 4096;
}

void BlockPool::AlignedFree::operator()(std::byte* p) const { ::operator delete[](p, std::align_val_t(kAlign)); }

BlockPool::BlockPool(CacheLayout layout, int64_t n_blocks) : layout_(layout), growable_(n_blocks == 0) {
  if (layout_.n_layers <= 0 || layout_.row <= 0) fail("KV cache: bad layout ({} layers of {} values)", layout_.n_layers, layout_.row);
  if (layout_.block_size <= 0 || layout_.block_size > (1 << 20))
    fail("KV cache: the block size must be 1 .. 1048576 tokens, got {}", layout_.block_size);
  if (n_blocks < 0 || n_blocks > std::numeric_limits<int32_t>::max())
    fail("KV cache: {} blocks is out of range", n_blocks);
  layers_.resize(size_t(layout_.n_layers));
  grow(growable_ ? 0 : n_blocks);
}

void BlockPool::grow(int64_t n_blocks) {
  const int64_t old = this->n_blocks();
  if (n_blocks <= old) return;
  const size_t layer_bytes = size_t(n_blocks * layout_.block_size * layout_.row_bytes());
  for (auto& l : layers_) {
    // A fixed pool is touched (zeroed) now, so that its memory is taken once at start and the
    // process's size stays flat however the blocks are used later; a growable one is not.
    std::unique_ptr<std::byte[], AlignedFree> bigger(
        static_cast<std::byte*>(::operator new[](layer_bytes, std::align_val_t(kAlign))));
    if (!growable_) std::memset(bigger.get(), 0, layer_bytes);
    if (old > 0) std::memcpy(bigger.get(), l.get(), size_t(old * layout_.block_size * layout_.row_bytes()));
    l = std::move(bigger);
  }
  refs_.resize(size_t(n_blocks), 0);
  cached_.resize(size_t(n_blocks), 0);
  generation_.resize(size_t(n_blocks), 0);
  prev_.resize(size_t(n_blocks), -1);
  next_.resize(size_t(n_blocks), -1);
  for (int64_t b = n_blocks - 1; b >= old; --b) free_.push_back(int32_t(b));
}

int64_t BlockPool::n_available() const {
  return growable_ ? std::numeric_limits<int64_t>::max() : n_free() + n_evictable();
}

void BlockPool::unlink(int32_t b) {
  const int32_t p = prev_[size_t(b)], n = next_[size_t(b)];
  (p >= 0 ? next_[size_t(p)] : head_) = n;
  (n >= 0 ? prev_[size_t(n)] : tail_) = p;
  prev_[size_t(b)] = next_[size_t(b)] = -1;
  --n_evictable_;
}

int32_t BlockPool::allocate() {
  if (free_.empty() && head_ < 0 && growable_) grow(std::max<int64_t>(16, n_blocks() * 2));
  int32_t b = -1;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else if (head_ >= 0) {
    b = head_;
    unlink(b);
    if (on_evict_) on_evict_(b);
    cached_[size_t(b)] = 0;
  } else {
    return -1;
  }
  refs_[size_t(b)] = 1;
  ++generation_[size_t(b)];
  return b;
}

void BlockPool::retain(int32_t b) {
  DSV3_CHECK(b >= 0 && b < n_blocks(), "block id out of range");
  if (refs_[size_t(b)]++ == 0) {
    DSV3_CHECK(cached_[size_t(b)], "retaining a free block");
    unlink(b);
  }
}

void BlockPool::release(int32_t b) {
  DSV3_CHECK(b >= 0 && b < n_blocks() && refs_[size_t(b)] > 0, "releasing a block that is not held");
  if (--refs_[size_t(b)] > 0) return;
  if (!cached_[size_t(b)]) {
    free_.push_back(b);
    return;
  }
  prev_[size_t(b)] = tail_;
  next_[size_t(b)] = -1;
  (tail_ >= 0 ? next_[size_t(tail_)] : head_) = b;
  tail_ = b;
  ++n_evictable_;
}

void BlockPool::set_cached(int32_t b, bool cached) {
  if (cached_[size_t(b)] == uint8_t(cached)) return;
  cached_[size_t(b)] = cached;
  if (!cached && refs_[size_t(b)] == 0) {
    unlink(b);
    free_.push_back(b);
  }
}

void BlockPool::write_row(int64_t il, int32_t b, int64_t offset, const float* values) {
  std::byte* dst = layers_[size_t(il)].get() + (int64_t(b) * layout_.block_size + offset) * layout_.row_bytes();
  if (layout_.dtype == CacheDtype::F32) {
    std::memcpy(dst, values, size_t(layout_.row_bytes()));
    return;
  }
  auto* d = reinterpret_cast<uint16_t*>(dst);
  for (int64_t k = 0; k < layout_.row; ++k) d[k] = f32_to_bf16(values[k]);
}

void BlockPool::copy_rows(int32_t dst, int32_t src, int64_t n_rows) {
  const int64_t rb = layout_.row_bytes(), bb = layout_.block_size * rb;
  for (auto& l : layers_) std::memcpy(l.get() + int64_t(dst) * bb, l.get() + int64_t(src) * bb, size_t(n_rows * rb));
  if (on_copy_) on_copy_(dst, src, n_rows);
}

SequenceCache::SequenceCache(std::shared_ptr<BlockPool> pool)
    : pool_(std::move(pool)), lengths_(size_t(pool_->layout().n_layers), 0) {}

SequenceCache SequenceCache::borrowed(std::shared_ptr<BlockPool> pool, std::span<const int32_t> blocks,
                                      std::span<const int64_t> lengths) {
  SequenceCache c(std::move(pool));
  DSV3_CHECK(int64_t(lengths.size()) == c.n_layers(), "borrowed cache: one length per layer");
  for (int32_t b : blocks) DSV3_CHECK(b >= 0 && b < c.pool_->n_blocks(), "borrowed cache: block id out of range");
  c.blocks_.assign(blocks.begin(), blocks.end());
  c.lengths_.assign(lengths.begin(), lengths.end());
  for (int64_t len : lengths) DSV3_CHECK(len >= 0 && len <= c.capacity(), "borrowed cache: length past its blocks");
  c.borrowed_ = true;
  return c;
}

SequenceCache::SequenceCache(const SequenceCache& o) : pool_(o.pool_), blocks_(o.blocks_), lengths_(o.lengths_) {
  DSV3_CHECK(!o.borrowed_, "copying a borrowed cache");
  for (int32_t b : blocks_) pool_->retain(b);
}

SequenceCache::SequenceCache(SequenceCache&& o) noexcept
    : pool_(o.pool_), blocks_(std::move(o.blocks_)), lengths_(o.lengths_), borrowed_(o.borrowed_) {
  o.blocks_.clear();
  std::fill(o.lengths_.begin(), o.lengths_.end(), 0);
}

SequenceCache& SequenceCache::operator=(SequenceCache&& o) noexcept {
  if (this != &o) {
    clear();
    pool_ = o.pool_;
    blocks_ = std::move(o.blocks_);
    lengths_ = o.lengths_;
    borrowed_ = o.borrowed_;
    o.blocks_.clear();
    std::fill(o.lengths_.begin(), o.lengths_.end(), 0);
  }
  return *this;
}

bool SequenceCache::try_reserve(int64_t n_tokens) {
  if (borrowed_) return capacity() >= n_tokens;
  while (capacity() < n_tokens) {
    const int32_t b = pool_->allocate();
    if (b < 0) return false;
    blocks_.push_back(b);
  }
  return true;
}

void SequenceCache::reserve(int64_t n_tokens) {
  if (!try_reserve(n_tokens))
    fail("the KV cache pool is full: {} positions need {} blocks of {} tokens, the pool has {} ({} held by others)",
         n_tokens, (n_tokens + block_size() - 1) / block_size(), block_size(), pool_->n_blocks(),
         pool_->n_used() - int64_t(blocks_.size()));
}

int64_t SequenceCache::blocks_to_write(int64_t from, int64_t to) const {
  if (to <= from) return 0;
  const int64_t bs = block_size(), have = int64_t(blocks_.size());
  int64_t need = std::max<int64_t>(0, (to + bs - 1) / bs - have);
  for (int64_t k = from / bs; k < std::min(have, (to + bs - 1) / bs); ++k) {
    const int32_t b = blocks_[size_t(k)];
    if (pool_->refs(b) > 1 || pool_->cached(b)) ++need;
  }
  return need;
}

bool SequenceCache::try_make_writable(int64_t pos) {
  if (!try_reserve(pos + 1)) return false;
  if (borrowed_) return true;
  const int64_t k = pos / block_size();
  const int32_t b = blocks_[size_t(k)];
  if (pool_->refs(b) == 1 && !pool_->cached(b)) return true;
  const int32_t copy = pool_->allocate();
  if (copy < 0) return false;
  // Rows the block holds for this sequence: up to the longest layer's length within it.
  int64_t filled = 0;
  for (int64_t len : lengths_) filled = std::max(filled, std::min(block_size(), len - k * block_size()));
  if (filled > 0) pool_->copy_rows(copy, b, filled);
  pool_->release(b);
  blocks_[size_t(k)] = copy;
  return true;
}

void SequenceCache::write_row(int64_t il, int64_t pos, const float* values) {
  const int64_t bs = block_size();
  DSV3_CHECK(pos >= 0 && pos < capacity(), "cache position without a block");
  const int32_t b = blocks_[size_t(pos / bs)];
  DSV3_CHECK(borrowed_ || (pool_->refs(b) == 1 && !pool_->cached(b)), "writing a shared cache block");
  pool_->write_row(il, b, pos % bs, values);
}

void SequenceCache::mark_written(int64_t il, int64_t pos) {
  DSV3_CHECK(pos <= lengths_[size_t(il)] && pos < capacity(), "cache positions must be written without gaps");
  lengths_[size_t(il)] = std::max(lengths_[size_t(il)], pos + 1);
}

LatentRows SequenceCache::view(int64_t il, int64_t n_ctx) const {
  DSV3_CHECK(n_ctx <= capacity(), "attending past the cache's blocks");
  return LatentRows{.rows = nullptr,
                    .n_ctx = n_ctx,
                    .blocks = blocks_.data(),
                    .data = pool_->layer_data(il),
                    .block_size = block_size(),
                    .dtype = pool_->layout().dtype};
}

void SequenceCache::truncate(int64_t n) {
  for (auto& len : lengths_) len = std::min(len, n);
}

void SequenceCache::adopt(std::span<const int32_t> blocks, int64_t n_tokens, int64_t n_layers_filled) {
  DSV3_CHECK(blocks_.empty() && !borrowed_, "adopting blocks into a cache that holds some");
  DSV3_CHECK(n_tokens <= int64_t(blocks.size()) * block_size(), "adopted blocks do not cover the positions");
  for (int32_t b : blocks) {
    pool_->retain(b);
    blocks_.push_back(b);
  }
  for (int64_t il = 0; il < n_layers() && il < n_layers_filled; ++il) lengths_[size_t(il)] = n_tokens;
}

void SequenceCache::clear() {
  if (!pool_) return;
  if (!borrowed_)
    for (auto it = blocks_.rbegin(); it != blocks_.rend(); ++it) pool_->release(*it);
  blocks_.clear();
  std::fill(lengths_.begin(), lengths_.end(), 0);
}

}  // namespace dsv3
