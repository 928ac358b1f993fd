// Byte-pair encoding model (tokenizer.json "model": {"type": "BPE"}).
//
// Tokens are stored as the byte strings they stand for: when the pipeline is byte-level, the
// loader maps GPT-2's printable stand-ins ("Ġ" for a space) back to raw bytes once, so that
// encoding works on the input bytes directly and decoding is a table lookup.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace dsv3 {

// A fixed-size array on 2 MB pages where the kernel allows (madvise): the merge and id tables
// are a few MB read at random, and with 4 kB pages most lookups also missed the TLB.
template <typename T>
class HugeArray {
 public:
  void assign(size_t n, const T& value);
  T& operator[](size_t i) { return data_.get()[i]; }
  const T& operator[](size_t i) const { return data_.get()[i]; }
  size_t size() const { return size_; }

 private:
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, Free> data_;
  size_t size_ = 0;
};

class Bpe {
 public:
  struct Merge {
    int32_t left, right;
  };

  // `vocab[i]` is the byte string of id i (ids must be dense; gaps hold empty strings and are
  // never produced). `merges` are in rank order. `ignore_merges` (tokenizer.json field) makes a
  // word that is itself in the vocabulary come out as one token.
  Bpe(std::vector<std::string> vocab, const std::vector<Merge>& merges, bool ignore_merges);

  // Appends the ids of one pre-tokenized word.
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

  int32_t token_to_id(std::string_view token) const;  // -1 when absent
  const std::string& id_to_bytes(int32_t id) const { return vocab_[id]; }
  size_t vocab_size() const { return vocab_.size(); }

 private:
  struct MergeResult {
    int32_t rank;
    int32_t id;
  };
  const MergeResult* find_merge(int32_t left, int32_t right) const;
  // Merges symbols[0, n) in place and returns the new count.
  size_t merge_small(int32_t* symbols, size_t n) const;
  void merge_large(std::vector<int32_t>& symbols) const;

  // There is no cache of encoded words (Hugging Face has one): measured on mixed text, hashing
  // and storing words under a lock cost more than the merges they saved.
  std::vector<std::string> vocab_;
  // Open-addressing table of ids keyed by their bytes. A slot holds the first 8 bytes and the
  // length, so most lookups touch one cache line and never the vocabulary strings.
  struct IdSlot {
    uint64_t prefix = 0;
    uint32_t length = 0;
    int32_t id = -1;  // -1: empty
  };
  HugeArray<IdSlot> id_table_;
  int id_shift_ = 64;
  // Whole-word fast path: most words are one vocabulary token, and a token whose own bytes
  // BPE-encode back to it can be emitted without merging. Known lazily per id (0 unknown,
  // 1 yes, 2 no); concurrent first uses compute the same answer, so relaxed atomics suffice.
  std::unique_ptr<std::atomic<uint8_t>[]> whole_word_;
  // Open-addressing table (left << 32 | right) -> result: the merge lookup is the hot loop of
  // encoding, and std::unordered_map's node chasing made it 3x slower.
  struct Slot {
    uint64_t key = kEmpty;
    MergeResult value{};
  };
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  HugeArray<Slot> merge_table_;
  int merge_shift_ = 64;
  int32_t byte_ids_[256];
  bool ignore_merges_;
};

}  // namespace dsv3
