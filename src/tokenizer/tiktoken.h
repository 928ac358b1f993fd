// tiktoken's byte-pair encoding, for the models that ship `tiktoken.model` instead of a
// tokenizer.json (Kimi-K2, Moonlight). The file is one "BASE64-BYTES RANK" line per token
// (tiktoken's load_tiktoken_bpe format); a token's id is its rank. Encoding a piece (one match
// of the split pattern) repeatedly merges the adjacent pair whose concatenation has the lowest
// rank, the leftmost on ties, exactly as tiktoken's CoreBPE does; a piece that is itself a token
// is that token. The split pattern and the special tokens are not in the file: Tokenizer takes
// them from a named pattern (tiktoken_pattern) and tokenizer_config.json.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace dsv3 {

class TiktokenBpe {
 public:
  // Parses the text of a tiktoken.model file; `name` labels errors ("tiktoken.model line 7:
  // 'QUJD' rank x is not an integer"). Every single byte must be a token (tiktoken needs them).
  TiktokenBpe(std::string_view text, const std::string& name);

  // Appends the ids of one piece of text (raw bytes).
  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const;

  // max rank + 1: the first id after the ranked tokens (Kimi's special tokens start there).
  int32_t n_ranks() const { return int32_t(tokens_.size()); }
  const std::string& bytes_of(int32_t rank) const { return tokens_[size_t(rank)]; }  // empty for a gap
  int32_t rank_of(std::string_view bytes) const;  // -1 when absent

  // Whether texts are cut as Kimi's script cuts them before they are encoded (kimi_presplit):
  // Tokenizer sets it for the kimi split pattern.
  bool kimi_presplit() const { return kimi_presplit_; }
  void set_kimi_presplit(bool on) { kimi_presplit_ = on; }

 private:
  std::vector<std::string> tokens_;                        // by rank
  std::unordered_map<std::string_view, int32_t> ranks_;    // views into tokens_
  bool kimi_presplit_ = false;
};

// The split pattern (PCRE2 syntax) called `name`: "kimi" (tokenization_kimi.py of Kimi-K2 and
// Moonlight), "o200k_base" or "cl100k_base" (OpenAI's, from tiktoken_ext/openai_public.py);
// nullopt for another name.
std::optional<std::string> tiktoken_pattern(std::string_view name);

// Kimi's cut of the text before tiktoken sees it (tokenization_kimi.py's encode, after Llama 3's
// tokenizer.py, against tiktoken issue 195): chunks of 400,000 code points, each cut further
// wherever a run of white space (Python's str.isspace) or of other characters would exceed
// 25,000 code points. Calls `piece` with each piece in order; pieces are encoded separately, so
// the cuts change the tokens of such long runs.
inline constexpr size_t kKimiMaxEncodeChars = 400000, kKimiMaxRunChars = 25000;
void kimi_presplit(std::string_view text, const std::function<void(std::string_view)>& piece);

// What a --tiktoken-pattern value means: a name above, or else a pattern in tiktoken's regex
// syntax, translated to PCRE2 (class intersections such as [\p{L}&&[^\p{Han}]] are refused with
// a message: PCRE2 has none).
std::string resolve_tiktoken_pattern(const std::string& name_or_pattern);

}  // namespace dsv3
