#include "runtime/prefix_cache.h"

#include <xxhash.h>

#include <cstring>
#include <vector>

#include "base/error.h"

namespace dsv3 {

PrefixCache::PrefixCache(std::shared_ptr<BlockPool> pool, uint64_t namespace_key, uint64_t key_mask)
    : pool_(std::move(pool)), namespace_key_(namespace_key), key_mask_(key_mask) {
  pool_->set_evict_hook([this](int32_t b) { forget(b); });
}

PrefixCache::~PrefixCache() {
  pool_->set_evict_hook({});
  for (size_t b = 0; b < entries_.size(); ++b)
    if (entries_[b].live) pool_->set_cached(int32_t(b), false);
}

uint64_t PrefixCache::chain_seed(std::string_view salt) const {
  return XXH3_64bits_withSeed(salt.data(), salt.size(), namespace_key_);
}

uint64_t PrefixCache::block_key(uint64_t seed, uint64_t parent, std::span<const int32_t> tokens) const {
  // One buffer, one-shot hash: [parent key | token ids].
  std::vector<uint8_t> buf(sizeof parent + tokens.size_bytes());
  std::memcpy(buf.data(), &parent, sizeof parent);
  if (!tokens.empty()) std::memcpy(buf.data() + sizeof parent, tokens.data(), tokens.size_bytes());
  // 0 stands for "no parent": keep it out of the key space.
  const uint64_t k = XXH3_64bits_withSeed(buf.data(), buf.size(), seed) & key_mask_;
  return k == 0 ? 1 : k;
}

std::vector<int32_t> PrefixCache::match(uint64_t seed, std::span<const int32_t> tokens, int64_t max_tokens,
                                        std::vector<uint64_t>* keys, bool need_mtp_rows) {
  const int64_t bs = pool_->block_size();
  std::vector<int32_t> out;
  uint64_t parent = 0;
  int32_t prev = -1;
  for (int64_t k = 0; (k + 1) * bs <= std::min<int64_t>(max_tokens, int64_t(tokens.size())); ++k) {
    const auto blk = tokens.subspan(size_t(k * bs), size_t(bs));
    const uint64_t key = block_key(seed, parent, blk);
    const auto it = by_key_.find(key);
    if (it == by_key_.end()) break;
    const int32_t b = it->second;
    const Entry& e = entries_[size_t(b)];
    // Confirm: same chain, written right after the block matched before it, same tokens (a
    // colliding key is a miss).
    if (!e.live || e.seed != seed || e.parent != parent || e.parent_block != prev ||
        e.generation != pool_->generation(b) || (prev >= 0 && e.parent_generation != pool_->generation(prev)) ||
        !std::equal(blk.begin(), blk.end(), e.tokens.begin()) || (need_mtp_rows && !e.mtp_rows))
      break;
    pool_->retain(b);
    out.push_back(b);
    if (keys) keys->push_back(key);
    parent = key;
    prev = b;
  }
  return out;
}

uint64_t PrefixCache::insert(uint64_t seed, uint64_t parent, int32_t parent_block, std::span<const int32_t> tokens,
                             int32_t block, bool mtp_rows) {
  DSV3_CHECK(int64_t(tokens.size()) == pool_->block_size(), "prefix cache: a block holds block_size tokens");
  const uint64_t key = block_key(seed, parent, tokens);
  if (by_key_.contains(key)) return key;
  if (parent_block >= 0 && !(indexed(parent_block) && entries_[size_t(parent_block)].key == parent)) return key;
  if (entries_.size() <= size_t(block)) entries_.resize(size_t(pool_->n_blocks()));
  Entry& e = entries_[size_t(block)];
  if (e.live) return key;  // indexed already under another key
  e = Entry{.key = key,
            .parent = parent,
            .seed = seed,
            .parent_block = parent_block,
            .parent_generation = parent_block >= 0 ? pool_->generation(parent_block) : 0,
            .generation = pool_->generation(block),
            .tokens = {tokens.begin(), tokens.end()},
            .live = true,
            .mtp_rows = mtp_rows};
  by_key_.emplace(key, block);
  pool_->set_cached(block, true);
  return key;
}

void PrefixCache::forget(int32_t block) {
  if (size_t(block) >= entries_.size() || !entries_[size_t(block)].live) return;
  Entry& e = entries_[size_t(block)];
  by_key_.erase(e.key);
  e = Entry{};
}

uint64_t prefix_namespace(std::string_view model_identity, CacheDtype dtype) {
  return XXH3_64bits_withSeed(model_identity.data(), model_identity.size(), uint64_t(dtype) + 1);
}

}  // namespace dsv3
