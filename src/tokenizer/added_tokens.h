// Added tokens (tokenizer.json "added_tokens"): strings that are cut out of the raw text before
// pre-tokenization and map straight to one id, with Hugging Face's matching rules (leftmost,
// then longest; lstrip/rstrip swallow neighbouring white space; single_word needs word edges).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/regex.h"

namespace dsv3 {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
  bool normalized = false;
};

class AddedTokens {
 public:
  explicit AddedTokens(std::vector<AddedToken> tokens);

  // A span of the input: an added token (id >= 0) or text to tokenize (id == -1).
  struct Span {
    size_t begin, end;
    int32_t id;
  };

  // Splits `text` on the tokens with the given `normalized` flag (Hugging Face matches the
  // non-normalized ones on the raw text first, then the normalized ones on normalized pieces).
  void split(std::string_view text, bool normalized, std::vector<Span>& out) const;

  const std::vector<AddedToken>& tokens() const { return tokens_; }
  const AddedToken* find_id(int32_t id) const;
  const AddedToken* find_content(std::string_view content) const;

 private:
  // A byte trie of token contents; walking it from a position finds the longest token there.
  struct Matcher {
    struct TrieNode {
      std::vector<std::pair<unsigned char, int32_t>> children;  // sorted by byte
      int32_t token = -1;                                      // index into tokens_ ending here
    };
    std::vector<TrieNode> nodes{1};
    bool first_byte[256] = {};
    int single_first_byte = -1;  // when all tokens start with one byte (DeepSeek: '<'), memchr finds candidates
    bool any = false;
  };
  static void insert(Matcher& m, const std::string& content, int32_t token);
  // Longest token of `m` starting at text[pos], or -1.
  int32_t longest_at(const Matcher& m, std::string_view text, size_t pos) const;

  std::vector<AddedToken> tokens_;
  Matcher raw_, normalized_;
  std::unique_ptr<Regex> word_start_, word_end_;  // Rust's \w at the edge of a string
};

}  // namespace dsv3
