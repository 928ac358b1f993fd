#include "tokenizer/regex.h"

#include <algorithm>
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

// [first, last] ranges of the additions with their category letter, sorted.
struct AddedRanges {
  struct Range {
    char32_t first, last;
    char category;
  };
  std::vector<Range> ranges;
  AddedRanges() {
    const std::pair<char, const char*> lists[] = {{'L', kAddedL}, {'M', kAddedM}, {'N', kAddedN}, {'P', kAddedP}, {'S', kAddedS}};
    for (const auto& [category, items] : lists) {
      std::string_view s(items);
      size_t i = 0;
      while ((i = s.find("\\x{", i)) != std::string_view::npos) {
        size_t close = s.find('}', i);
        char32_t a = static_cast<char32_t>(std::stoul(std::string(s.substr(i + 3, close - i - 3)), nullptr, 16));
        char32_t b = a;
        i = close + 1;
        if (s.substr(i, 4) == "-\\x{") {
          size_t close2 = s.find('}', i);
          b = static_cast<char32_t>(std::stoul(std::string(s.substr(i + 4, close2 - i - 4)), nullptr, 16));
          i = close2 + 1;
        }
        ranges.push_back({a, b, category});
      }
    }
    std::sort(ranges.begin(), ranges.end(), [](const Range& x, const Range& y) { return x.first < y.first; });
  }
  // The category of `c` if it is an addition, else 0.
  char category(char32_t c) const {
    if (ranges.empty() || c < ranges.front().first) return 0;
    auto it = std::upper_bound(ranges.begin(), ranges.end(), c, [](char32_t v, const Range& r) { return v < r.first; });
    --it;
    return it->last >= c ? it->category : 0;
  }
};

// Stand-ins known to Unicode 14, by category and UTF-8 length (3 or 4 bytes); none is in the
// CJK/kana ranges that DeepSeek's patterns isolate. All additions are above U+07FF.
char32_t stand_in(char category, size_t length) {
  switch (category) {
    case 'L': return length == 3 ? 0x0905 : 0x10000;   // DEVANAGARI LETTER A, LINEAR B SYLLABLE B008 A
    case 'M': return length == 3 ? 0x0900 : 0x101FD;   // DEVANAGARI SIGN INVERTED CANDRABINDU, PHAISTOS STROKE
    case 'N': return length == 3 ? 0x0966 : 0x10107;   // DEVANAGARI DIGIT ZERO, AEGEAN NUMBER ONE
    case 'P': return length == 3 ? 0x2010 : 0x10100;   // HYPHEN, AEGEAN WORD SEPARATOR LINE
    default: return length == 3 ? 0x2190 : 0x1F600;    // LEFTWARDS ARROW, GRINNING FACE
  }
}

const AddedRanges& added_ranges() {
  static const AddedRanges kRanges;  // immutable table, built on first use
  return kRanges;
}

}  // namespace

bool has_new_characters(std::string_view text) {
  const AddedRanges& r = added_ranges();
  size_t i = 0;
  while (i < text.size()) {
    if (static_cast<unsigned char>(text[i]) < 0xE0) {
      ++i;  // ASCII, 2-byte leads and continuation bytes: no addition is below U+0800
      continue;
    }
    if (r.category(next_code_point(text, i))) return true;
  }
  return false;
}

std::string_view substitute_new_characters(std::string_view text, std::string& buffer) {
  if (!has_new_characters(text)) return text;
  const AddedRanges& r = added_ranges();
  buffer.assign(text);
  size_t i = 0;
  while (i < buffer.size()) {
    if (static_cast<unsigned char>(buffer[i]) < 0xE0) {
      ++i;
      continue;
    }
    size_t at = i;
    char category = r.category(next_code_point(buffer, i));
    if (category) {
      std::string rep;
      append_utf8(rep, stand_in(category, i - at));
      DSV3_CHECK(rep.size() == i - at, "stand-in has another UTF-8 length");
      buffer.replace(at, rep.size(), rep);
    }
  }
  return buffer;
}

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
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE | PCRE2_NO_UTF_CHECK,
                        &err, &offset, nullptr);
  if (!code_) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    fail("{}: cannot compile regex at offset {}: {}", what, offset, reinterpret_cast<const char*>(msg));
  }
  jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;  // else the interpreter runs it
}

Regex::~Regex() {
  if (code_) pcre2_code_free(code_);
}

MatchScratch::MatchScratch() : data_(pcre2_match_data_create(1, nullptr)) {}

MatchScratch::~MatchScratch() {
  pcre2_match_data_free(data_);
  if (context_) pcre2_match_context_free(context_);
  if (stack_) pcre2_jit_stack_free(stack_);
}

void Regex::find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& out, MatchScratch& scratch,
                     bool substitute) const {
  if (substitute) text = substitute_new_characters(text, scratch.buffer_);
  auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  while (pos <= text.size()) {
    int rc = jit_ ? pcre2_jit_match(code_, subject, text.size(), pos, 0, scratch.data_, scratch.context_)
                  : pcre2_match(code_, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, scratch.data_, scratch.context_);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !scratch.stack_) {
      // Deeply backtracking input: retry with a large JIT stack (made only when needed).
      scratch.stack_ = pcre2_jit_stack_create(64 * 1024, 64 * 1024 * 1024, nullptr);
      scratch.context_ = pcre2_match_context_create(nullptr);
      pcre2_jit_stack_assign(scratch.context_, nullptr, scratch.stack_);
      continue;
    }
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      fail("pre-tokenizer regex failed at byte {}: {}", pos, reinterpret_cast<const char*>(msg));
    }
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(scratch.data_);
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
