// Byte-pair encoding model (tokenizer.json "model": {"type": "BPE"}).
//
// Tokens are stored as the byte strings they stand for: when the pipeline is byte-level, the
// loader maps GPT-2's printable stand-ins ("Ġ" for a space) back to raw bytes once, so that
// encoding works on the input bytes directly and decoding is a table lookup.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace dsv3 {

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
  void merge_small(std::vector<int32_t>& symbols) const;
  void merge_large(std::vector<int32_t>& symbols) const;

  std::vector<std::string> vocab_;
  std::unordered_map<std::string_view, int32_t> ids_;  // views into vocab_
  std::unordered_map<uint64_t, MergeResult> merges_;   // (left << 32 | right) -> result
  int32_t byte_ids_[256];
  bool ignore_merges_;
};

}  // namespace dsv3
