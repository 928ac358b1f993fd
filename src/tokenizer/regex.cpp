#include "tokenizer/regex.h"

#include <memory>

#include "base/error.h"
#include "tokenizer/utf8.h"

namespace dsv3 {
namespace {

// Unicode White_Space as PCRE2 class items (no brackets), and its complement.
constexpr const char* kWhiteSpaceItems = "\\x{9}-\\x{D}\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}";
constexpr const char* kNotWhiteSpaceItems =
    "\\x{0}-\\x{8}\\x{E}-\\x{1F}\\x{21}-\\x{84}\\x{86}-\\x{9F}\\x{A1}-\\x{167F}\\x{1681}-\\x{1FFF}\\x{200B}-\\x{2027}"
    "\\x{202A}-\\x{202E}\\x{2030}-\\x{205E}\\x{2060}-\\x{2FFF}\\x{3001}-\\x{10FFFF}";

#include "tokenizer/unicode_additions.inc"

// PCRE2 class items for \p{X}, X one of L M N P S, extended to Hugging Face's Unicode version.
const char* added_items(char category) {
  switch (category) {
    case 'L': return kAddedL;
    case 'M': return kAddedM;
    case 'N': return kAddedN;
    case 'P': return kAddedP;
    case 'S': return kAddedS;
    default: return nullptr;
  }
}

}  // namespace

std::string onig_to_pcre2(std::string_view p) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      char e = p[i + 1];
      if (e == 's' || e == 'S') {
        const char* items = e == 's' ? kWhiteSpaceItems : kNotWhiteSpaceItems;
        out += in_class ? std::string(items) : "[" + std::string(items) + "]";
        ++i;
        continue;
      }
      if (e == 'p' && i + 4 < p.size() && p[i + 2] == '{' && p[i + 4] == '}' && added_items(p[i + 3])) {
        std::string items = std::string("\\p{") + p[i + 3] + "}" + added_items(p[i + 3]);
        out += in_class ? items : "[" + items + "]";
        i += 4;
        continue;
      }
      if (e == 'u' && i + 6 <= p.size()) {
        out += "\\x{" + std::string(p.substr(i + 2, 4)) + "}";
        i += 5;
        continue;
      }
      out += c;
      out += e;
      ++i;
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = true;
      out += c;
      // A ']' or '^]' right after the opening bracket is literal.
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];
      continue;
    }
    if (c == ']' && in_class) in_class = false;
    out += c;
  }
  return out;
}

Regex::Regex(const std::string& pattern, const std::string& what) {
  int err = 0;
  PCRE2_SIZE offset = 0;
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK,
                        &err, &offset, nullptr);
  if (!code_) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    fail("{}: cannot compile regex at offset {}: {}", what, offset, reinterpret_cast<const char*>(msg));
  }
  pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);  // falls back to the interpreter when JIT is absent
}

Regex::~Regex() {
  if (code_) pcre2_code_free(code_);
}

void Regex::find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const {
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(pcre2_match_data_create_from_pattern(code_, nullptr),
                                                                         &pcre2_match_data_free);
  std::unique_ptr<pcre2_match_context, decltype(&pcre2_match_context_free)> ctx(nullptr, &pcre2_match_context_free);
  std::unique_ptr<pcre2_jit_stack, decltype(&pcre2_jit_stack_free)> stack(nullptr, &pcre2_jit_stack_free);
  auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  while (pos <= text.size()) {
    int rc = pcre2_match(code_, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, md.get(), ctx.get());
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !stack) {
      // Deeply backtracking input: retry with a large JIT stack (made only when needed).
      stack.reset(pcre2_jit_stack_create(64 * 1024, 64 * 1024 * 1024, nullptr));
      ctx.reset(pcre2_match_context_create(nullptr));
      pcre2_jit_stack_assign(ctx.get(), nullptr, stack.get());
      continue;
    }
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      fail("pre-tokenizer regex failed at byte {}: {}", pos, reinterpret_cast<const char*>(msg));
    }
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
    size_t b = ov[0], e = ov[1];
    if (e > b) {
      out.emplace_back(b, e);
      pos = e;
    } else {
      // Empty match: Hugging Face skips it; step one character.
      if (pos >= text.size()) break;
      size_t i = pos;
      next_code_point(text, i);
      pos = i;
    }
  }
}

bool Regex::search(std::string_view text) const {
  std::vector<std::pair<size_t, size_t>> m;
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(pcre2_match_data_create_from_pattern(code_, nullptr),
                                                                         &pcre2_match_data_free);
  return pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), 0, PCRE2_NO_UTF_CHECK, md.get(), nullptr) >= 0;
}

}  // namespace dsv3
