// A compiled PCRE2 regex (JIT when available) for Oniguruma-syntax patterns from tokenizer.json.
#pragma once

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dsv3 {

// Rewrites the parts of an Oniguruma pattern whose meaning differs in PCRE2: `\s`/`\S` become
// the explicit Unicode White_Space set (PCRE2 with UCP also counts U+180E, Hugging Face does
// not), and `\uXXXX` becomes `\x{XXXX}`.
std::string onig_to_pcre2(std::string_view pattern);

// Unicode 15-16 assigned thousands of letters, marks, numbers, punctuation and symbols that
// PCRE2 10.42 (Unicode 14) sees as unassigned; Hugging Face's Oniguruma knows them. Listing them
// inside every \p{X} halves matching speed, so instead, before matching, each such character is
// replaced by an older character of the same category and the same UTF-8 length (match offsets
// stay valid). This returns `text` unchanged when it holds none, else the rewritten copy in
// `buffer`. Exact for patterns that test L, M, N, P, S and white space, as tokenizer.json
// patterns do. `text` must be valid UTF-8.
std::string_view substitute_new_characters(std::string_view text, std::string& buffer);
bool has_new_characters(std::string_view text);

// Per-call match state (PCRE2 match data and, when a pattern needs it, a larger JIT stack),
// shared by every regex of one encode call so that splitting many small pieces allocates once.
class MatchScratch {
 public:
  MatchScratch();
  ~MatchScratch();
  MatchScratch(const MatchScratch&) = delete;
  MatchScratch& operator=(const MatchScratch&) = delete;

 private:
  friend class Regex;
  pcre2_match_data* data_ = nullptr;
  pcre2_match_context* context_ = nullptr;
  pcre2_jit_stack* stack_ = nullptr;
  std::string buffer_;  // text with new characters substituted
};

class Regex {
 public:
  // `pattern` is in PCRE2 syntax; `what` names it in error messages. Compiled multiline: in
  // Oniguruma's Ruby syntax, which Hugging Face uses, ^ and $ match at every line.
  Regex(const std::string& pattern, const std::string& what);
  ~Regex();
  Regex(Regex&& o) noexcept : code_(std::exchange(o.code_, nullptr)), jit_(o.jit_) {}
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  Regex& operator=(Regex&&) = delete;

  // Appends the [begin, end) byte ranges of all non-overlapping, non-empty matches in `text`.
  // With `substitute`, characters newer than PCRE2's tables are substituted first (see above).
  void find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& out, MatchScratch& scratch,
                bool substitute = false) const;

  // True when the pattern matches somewhere in `text`.
  bool search(std::string_view text) const;

 private:
  pcre2_code* code_ = nullptr;
  bool jit_ = false;
};

}  // namespace dsv3
