#include "tokenizer/bpe.h"

#include <queue>

#include "base/error.h"

namespace dsv3 {
namespace {

uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

// Words up to this many symbols are merged by rescanning (no allocation, cache friendly);
// longer ones use a heap so that a 100 kB run of one script stays O(n log n).
constexpr size_t kSmallWord = 48;

}  // namespace

Bpe::Bpe(std::vector<std::string> vocab, const std::vector<Merge>& merges, bool ignore_merges)
    : vocab_(std::move(vocab)), ignore_merges_(ignore_merges) {
  ids_.reserve(vocab_.size() * 2);
  for (size_t i = 0; i < vocab_.size(); ++i) {
    if (!vocab_[i].empty()) ids_.emplace(vocab_[i], static_cast<int32_t>(i));
  }
  for (int b = 0; b < 256; ++b) byte_ids_[b] = token_to_id(std::string(1, static_cast<char>(b)));
  merges_.reserve(merges.size() * 2);
  for (size_t r = 0; r < merges.size(); ++r) {
    const Merge& m = merges[r];
    std::string joined = vocab_[m.left] + vocab_[m.right];
    int32_t id = token_to_id(joined);
    if (id < 0) fail("merge {} ('{}' + '{}') makes a token that is not in the vocabulary", r, vocab_[m.left], vocab_[m.right]);
    merges_.emplace(pair_key(m.left, m.right), MergeResult{static_cast<int32_t>(r), id});
  }
}

int32_t Bpe::token_to_id(std::string_view token) const {
  auto it = ids_.find(token);
  return it == ids_.end() ? -1 : it->second;
}

const Bpe::MergeResult* Bpe::find_merge(int32_t left, int32_t right) const {
  auto it = merges_.find(pair_key(left, right));
  return it == merges_.end() ? nullptr : &it->second;
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
  std::vector<int32_t> symbols;
  symbols.reserve(word.size());
  for (unsigned char c : word) {
    // Without byte fallback or an unk token, Hugging Face drops symbols it has no id for.
    if (byte_ids_[c] >= 0) symbols.push_back(byte_ids_[c]);
  }
  if (symbols.size() <= kSmallWord) {
    merge_small(symbols);
  } else {
    merge_large(symbols);
  }
  out.insert(out.end(), symbols.begin(), symbols.end());
}

// Repeatedly merges the adjacent pair of lowest rank, leftmost first: the order in which
// Hugging Face's priority queue (rank, then position) applies merges.
void Bpe::merge_small(std::vector<int32_t>& s) const {
  int32_t ranks[kSmallWord];
  int32_t results[kSmallWord];
  size_t n = s.size();
  auto look = [&](size_t i) {
    const MergeResult* m = find_merge(s[i], s[i + 1]);
    ranks[i] = m ? m->rank : INT32_MAX;
    results[i] = m ? m->id : -1;
  };
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
  s.resize(n);
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
