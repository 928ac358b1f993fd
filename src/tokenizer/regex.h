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
// not), `\p{L}`, `\p{M}`, `\p{N}`, `\p{P}` and `\p{S}` gain the code points assigned between
// PCRE2's Unicode 14 and Oniguruma's Unicode 16 (unicode_additions.inc), and `\uXXXX` becomes
// `\x{XXXX}`.
std::string onig_to_pcre2(std::string_view pattern);

class Regex {
 public:
  // `pattern` is in PCRE2 syntax; `what` names it in error messages.
  Regex(const std::string& pattern, const std::string& what);
  ~Regex();
  Regex(Regex&& o) noexcept : code_(std::exchange(o.code_, nullptr)) {}
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  Regex& operator=(Regex&&) = delete;

  // Appends the [begin, end) byte ranges of all non-overlapping, non-empty matches in `text`.
  void find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const;

  // True when the pattern matches somewhere in `text`.
  bool search(std::string_view text) const;

 private:
  pcre2_code* code_ = nullptr;
};

}  // namespace dsv3
