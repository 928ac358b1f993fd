#include "model/kv_cache.h"

#include <algorithm>

#include "base/error.h"

namespace dsv3 {

SequenceCache::SequenceCache(int64_t n_layers, int64_t row, int64_t capacity)
    : row_(row), layers_(size_t(n_layers)), lengths_(size_t(n_layers), 0) {
  reserve(capacity);
}

void SequenceCache::reserve(int64_t n_tokens) {
  if (n_tokens <= capacity_) return;
  capacity_ = n_tokens;
  for (auto& l : layers_) l.resize(size_t(capacity_ * row_));
}

void SequenceCache::mark_written(int64_t il, int64_t pos) {
  DSV3_CHECK(pos <= lengths_[size_t(il)] && pos < capacity_, "cache positions must be written without gaps");
  lengths_[size_t(il)] = std::max(lengths_[size_t(il)], pos + 1);
}

void SequenceCache::truncate(int64_t n) {
  for (auto& len : lengths_) len = std::min(len, n);
}

uint64_t SequenceCache::bytes() const { return uint64_t(capacity_) * uint64_t(row_) * 4 * layers_.size(); }

}  // namespace dsv3
