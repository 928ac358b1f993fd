#include "tokenizer/bpe.h"

#include <cstring>
#include <memory>
#include <queue>
#include <type_traits>

#include <sys/mman.h>

#include "base/error.h"

namespace dsv3 {
namespace {

uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

// 64-bit FNV-1a with a final multiply (the top bits index the table).
uint64_t word_hash(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h * 0x9E3779B97F4A7C15ull;
}

// The first 8 bytes of `s`, zero padded.
uint64_t prefix8(std::string_view s) {
  uint64_t v = 0;
  std::memcpy(&v, s.data(), std::min<size_t>(8, s.size()));
  return v;
}

// Words up to this many symbols are merged by rescanning (no allocation, cache friendly);
// longer ones use a heap so that a 100 kB run of one script stays O(n log n).
constexpr size_t kSmallWord = 48;

}  // namespace

template <typename T>
void HugeArray<T>::assign(size_t n, const T& value) {
  static_assert(std::is_trivially_destructible_v<T>, "HugeArray frees without destroying");
  constexpr size_t kHugePage = size_t{2} << 20;
  size_t bytes = (n * sizeof(T) + kHugePage - 1) / kHugePage * kHugePage;
  T* p = static_cast<T*>(std::aligned_alloc(kHugePage, bytes));
  DSV3_CHECK(p != nullptr, "out of memory for the BPE tables");
  madvise(p, bytes, MADV_HUGEPAGE);  // a hint; without it the table still works
  std::uninitialized_fill_n(p, n, value);
  data_.reset(p);
  size_ = n;
}

Bpe::Bpe(std::vector<std::string> vocab, const std::vector<Merge>& merges, bool ignore_merges)
    : vocab_(std::move(vocab)), ignore_merges_(ignore_merges) {
  size_t id_capacity = 16;
  id_shift_ = 60;
  while (id_capacity < vocab_.size() * 2) {
    id_capacity *= 2;
    --id_shift_;
  }
  id_table_.assign(id_capacity, IdSlot{});
  for (size_t i = 0; i < vocab_.size(); ++i) {
    if (vocab_[i].empty() || token_to_id(vocab_[i]) >= 0) continue;  // the first id of a duplicate wins
    size_t mask = id_table_.size() - 1;
    for (size_t k = word_hash(vocab_[i]) >> id_shift_;; k = (k + 1) & mask) {
      if (id_table_[k].id < 0) {
        id_table_[k] = {prefix8(vocab_[i]), static_cast<uint32_t>(vocab_[i].size()), static_cast<int32_t>(i)};
        break;
      }
    }
  }
  whole_word_ = std::make_unique<std::atomic<uint8_t>[]>(vocab_.size());
  for (int b = 0; b < 256; ++b) byte_ids_[b] = token_to_id(std::string(1, static_cast<char>(b)));
  size_t capacity = 16;
  merge_shift_ = 60;
  while (capacity < merges.size() * 2) {
    capacity *= 2;
    --merge_shift_;
  }
  merge_table_.assign(capacity, Slot{});
  for (size_t r = 0; r < merges.size(); ++r) {
    const Merge& m = merges[r];
    std::string joined = vocab_[m.left] + vocab_[m.right];
    int32_t id = token_to_id(joined);
    if (id < 0) fail("merge {} ('{}' + '{}') makes a token that is not in the vocabulary", r, vocab_[m.left], vocab_[m.right]);
    uint64_t key = pair_key(m.left, m.right);
    size_t mask = merge_table_.size() - 1;
    for (size_t i = (key * 0x9E3779B97F4A7C15ull) >> merge_shift_;; i = (i + 1) & mask) {
      if (merge_table_[i].key == key) break;  // a repeated merge keeps its first (lowest) rank
      if (merge_table_[i].key == kEmpty) {
        merge_table_[i] = {key, MergeResult{static_cast<int32_t>(r), id}};
        break;
      }
    }
  }
}

int32_t Bpe::token_to_id(std::string_view token) const {
  size_t mask = id_table_.size() - 1;
  uint64_t prefix = prefix8(token);
  for (size_t k = word_hash(token) >> id_shift_;; k = (k + 1) & mask) {
    const IdSlot& slot = id_table_[k];
    if (slot.id < 0) return -1;
    if (slot.prefix == prefix && slot.length == token.size() &&
        (token.size() <= 8 || std::string_view(vocab_[slot.id]).substr(8) == token.substr(8))) {
      return slot.id;
    }
  }
}

const Bpe::MergeResult* Bpe::find_merge(int32_t left, int32_t right) const {
  uint64_t key = pair_key(left, right);
  size_t mask = merge_table_.size() - 1;
  for (size_t i = (key * 0x9E3779B97F4A7C15ull) >> merge_shift_;; i = (i + 1) & mask) {
    const Slot& s = merge_table_[i];
    if (s.key == key) return &s.value;
    if (s.key == kEmpty) return nullptr;
  }
}

void Bpe::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    int32_t id = token_to_id(word);
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }
  int32_t whole = -1;
  if (word.size() <= kSmallWord) {
    whole = token_to_id(word);
    if (whole >= 0) {
      uint8_t known = whole_word_[whole].load(std::memory_order_relaxed);
      if (known == 1) {
        out.push_back(whole);
        return;
      }
      if (known == 2) whole = -1;
    }
  }
  if (word.size() <= kSmallWord) {
    int32_t symbols[kSmallWord];
    size_t n = 0;
    for (unsigned char c : word) {
      // Without byte fallback or an unk token, Hugging Face drops symbols it has no id for.
      if (byte_ids_[c] >= 0) symbols[n++] = byte_ids_[c];
    }
    n = merge_small(symbols, n);
    if (whole >= 0) whole_word_[whole].store(n == 1 && symbols[0] == whole ? 1 : 2, std::memory_order_relaxed);
    out.insert(out.end(), symbols, symbols + n);
    return;
  }
  std::vector<int32_t> symbols;
  symbols.reserve(word.size());
  for (unsigned char c : word) {
    if (byte_ids_[c] >= 0) symbols.push_back(byte_ids_[c]);
  }
  merge_large(symbols);
  out.insert(out.end(), symbols.begin(), symbols.end());
}

// Repeatedly merges the adjacent pair of lowest rank, leftmost first: the order in which
// Hugging Face's priority queue (rank, then position) applies merges.
size_t Bpe::merge_small(int32_t* s, size_t n) const {
  int32_t ranks[kSmallWord];
  int32_t results[kSmallWord];
  auto look = [&](size_t i) {
    const MergeResult* m = find_merge(s[i], s[i + 1]);
    ranks[i] = m ? m->rank : INT32_MAX;
    results[i] = m ? m->id : -1;
  };
  // Touch every pair's slot first: the misses into the merge table then overlap.
  for (size_t i = 0; i + 1 < n; ++i) {
    uint64_t key = pair_key(s[i], s[i + 1]);
    __builtin_prefetch(&merge_table_[(key * 0x9E3779B97F4A7C15ull) >> merge_shift_]);
  }
  for (size_t i = 0; i + 1 < n; ++i) look(i);
  while (n > 1) {
    size_t best = 0;
    for (size_t i = 1; i + 1 < n; ++i) {
      if (ranks[i] < ranks[best]) best = i;
    }
    if (ranks[best] == INT32_MAX) break;
    s[best] = results[best];
    for (size_t i = best + 1; i + 1 < n; ++i) {
      s[i] = s[i + 1];
      ranks[i] = ranks[i + 1];
      results[i] = results[i + 1];
    }
    --n;
    if (best + 1 < n) look(best);
    if (best > 0) look(best - 1);
  }
  return n;
}

void Bpe::merge_large(std::vector<int32_t>& s) const {
  size_t n = s.size();
  std::vector<int32_t> prev(n), next(n);
  for (size_t i = 0; i < n; ++i) {
    prev[i] = static_cast<int32_t>(i) - 1;
    next[i] = i + 1 < n ? static_cast<int32_t>(i + 1) : -1;
  }
  struct Entry {
    int32_t rank, pos, left, right;  // left/right: the symbol ids the merge was found for
    bool operator>(const Entry& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> queue;
  auto push = [&](int32_t i) {
    if (i < 0 || next[i] < 0) return;
    if (const MergeResult* m = find_merge(s[i], s[next[i]])) queue.push({m->rank, i, s[i], s[next[i]]});
  };
  for (size_t i = 0; i + 1 < n; ++i) push(static_cast<int32_t>(i));
  std::vector<bool> alive(n, true);
  while (!queue.empty()) {
    Entry e = queue.top();
    queue.pop();
    int32_t i = e.pos;
    int32_t j = next[i];
    // Stale entries: a neighbour was merged away or changed since the entry was pushed.
    if (!alive[i] || j < 0 || s[i] != e.left || s[j] != e.right) continue;
    s[i] = find_merge(s[i], s[j])->id;
    alive[j] = false;
    next[i] = next[j];
    if (next[j] >= 0) prev[next[j]] = i;
    push(prev[i]);
    push(i);
  }
  size_t w = 0;
  for (int32_t i = 0; i >= 0; i = next[i]) s[w++] = s[i];
  s.resize(w);
}

}  // namespace dsv3
