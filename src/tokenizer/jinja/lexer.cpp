#include "tokenizer/jinja/lexer.h"

#include <algorithm>

#include "base/error.h"
#include "tokenizer/jinja/value.h"
#include "tokenizer/utf8.h"

namespace dsv3::jinja {
namespace {

// The source after transformers' block options, with each byte's offset in the original.
struct Source {
  std::string text;
  std::vector<size_t> origin;
};

bool is_line_start(const std::string& s, size_t i) {
  if (i == 0) return true;
  char p = s[i - 1];
  if (p == '\n' || p == '\r') return true;
  // U+2028 / U+2029 (E2 80 A8/A9) also end lines for JavaScript's ^ in multiline mode.
  return i >= 3 && static_cast<unsigned char>(s[i - 3]) == 0xE2 && static_cast<unsigned char>(s[i - 2]) == 0x80 &&
         (static_cast<unsigned char>(s[i - 1]) == 0xA8 || static_cast<unsigned char>(s[i - 1]) == 0xA9);
}

bool space_at(const std::string& s, size_t i, size_t* next = nullptr) {
  if (i >= s.size()) return false;
  size_t k = i;
  bool r = js_is_space(next_code_point(s, k));
  if (next) *next = k;
  return r;
}

// {% generation %} / {% endgeneration %} (transformers' assistant-mask markers) are dropped with
// the white space around them, unless a '-' keeps that side's white space out:
// /(\s*){%(-?)\s*(?:end)?generation\s*(-?)%}(\s*)/ -> (lstrip ? "" : before) + (rstrip ? "" : after).
Source strip_generation_tags(const Source& in) {
  const std::string& s = in.text;
  Source out;
  size_t i = 0;
  while (i < s.size()) {
    // Find the next tag start; the white space run before it belongs to the match.
    size_t tag = s.find("{%", i);
    if (tag == std::string::npos) break;
    size_t k = tag + 2;
    bool lstrip = k < s.size() && s[k] == '-';
    if (lstrip) ++k;
    size_t n = 0;
    while (space_at(s, k, &n)) k = n;
    if (s.compare(k, 3, "end") == 0) k += 3;
    bool is_generation = s.compare(k, 10, "generation") == 0;
    if (!is_generation) {
      for (size_t c = i; c < tag + 2; ++c) {
        out.text += s[c];
        out.origin.push_back(in.origin[c]);
      }
      i = tag + 2;
      continue;
    }
    k += 10;
    while (space_at(s, k, &n)) k = n;
    bool rstrip = k < s.size() && s[k] == '-';
    if (rstrip) ++k;
    if (s.compare(k, 2, "%}") != 0) {
      for (size_t c = i; c < tag + 2; ++c) {
        out.text += s[c];
        out.origin.push_back(in.origin[c]);
      }
      i = tag + 2;
      continue;
    }
    size_t end = k + 2;
    // The white space run right before the tag (within [i, tag)).
    size_t before = tag;
    {
      size_t p = i, run = i;
      while (p < tag) {
        size_t q = p + 1;
        if (space_at(s, p, &q)) {
          p = q;
        } else {
          p = q;
          run = p;
        }
      }
      before = run;
    }
    size_t after = end;
    while (space_at(s, after, &n)) after = n;
    auto copy = [&](size_t b, size_t e) {
      for (size_t c = b; c < e; ++c) {
        out.text += s[c];
        out.origin.push_back(in.origin[c]);
      }
    };
    copy(i, before);
    if (!lstrip) copy(before, tag);
    if (!rstrip) copy(end, after);
    i = after;
  }
  for (size_t c = i; c < s.size(); ++c) {
    out.text += s[c];
    out.origin.push_back(in.origin[c]);
  }
  out.origin.push_back(in.origin.back());
  return out;
}

// @huggingface/jinja's preprocess: drop one trailing newline; lstrip_blocks removes spaces and
// tabs between a line start and "{%", "{#" or "{-"; trim_blocks removes the newline after
// "%}", "#}" or "-}"; then {% generation %} markers go (strip_generation_tags). As jinja2,
// "{%+" and "+%}" turn lstrip_blocks and trim_blocks off for their side of the tag.
Source preprocess(const std::string& src) {
  std::string s = src;
  if (!s.empty() && s.back() == '\n') s.pop_back();
  Source a;
  for (size_t i = 0; i < s.size();) {
    if (is_line_start(s, i)) {
      size_t j = i;
      while (j < s.size() && (s[j] == ' ' || s[j] == '\t')) ++j;
      // "{%+" keeps the indentation (jinja2 turns lstrip_blocks off for that tag).
      const bool keep = j + 2 < s.size() && s[j + 1] == '%' && s[j + 2] == '+';
      if (j > i && j + 1 < s.size() && s[j] == '{' && (s[j + 1] == '%' || s[j + 1] == '#' || s[j + 1] == '-') && !keep)
        i = j;
    }
    a.text += s[i];
    a.origin.push_back(i);
    ++i;
  }
  Source b;
  for (size_t i = 0; i < a.text.size(); ++i) {
    b.text += a.text[i];
    b.origin.push_back(a.origin[i]);
    // "+%}" keeps the newline (jinja2 turns trim_blocks off for that tag).
    const bool keep = i >= 2 && a.text[i - 1] == '%' && a.text[i - 2] == '+';
    if (a.text[i] == '}' && i > 0 && (a.text[i - 1] == '%' || a.text[i - 1] == '#' || a.text[i - 1] == '-') &&
        i + 1 < a.text.size() && a.text[i + 1] == '\n' && !keep) {
      ++i;
    }
  }
  b.origin.push_back(s.size());
  return strip_generation_tags(b);
}

bool is_word(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}
bool is_digit(char c) { return c >= '0' && c <= '9'; }

struct Mapping {
  const char* seq;
  TokenType type;
};
constexpr Mapping kMappings[] = {
    {"{%", TokenType::kOpenStatement},
    {"%}", TokenType::kCloseStatement},
    {"{{", TokenType::kOpenExpression},
    {"}}", TokenType::kCloseExpression},
    {"(", TokenType::kOpenParen},
    {")", TokenType::kCloseParen},
    {"{", TokenType::kOpenCurlyBracket},
    {"}", TokenType::kCloseCurlyBracket},
    {"[", TokenType::kOpenSquareBracket},
    {"]", TokenType::kCloseSquareBracket},
    {",", TokenType::kComma},
    {".", TokenType::kDot},
    {":", TokenType::kColon},
    {"|", TokenType::kPipe},
    {"<=", TokenType::kComparisonBinaryOperator},
    {">=", TokenType::kComparisonBinaryOperator},
    {"==", TokenType::kComparisonBinaryOperator},
    {"!=", TokenType::kComparisonBinaryOperator},
    {"<", TokenType::kComparisonBinaryOperator},
    {">", TokenType::kComparisonBinaryOperator},
    {"+", TokenType::kAdditiveBinaryOperator},
    {"-", TokenType::kAdditiveBinaryOperator},
    {"~", TokenType::kAdditiveBinaryOperator},
    {"**", TokenType::kExponentiationBinaryOperator},
    {"*", TokenType::kMultiplicativeBinaryOperator},
    {"//", TokenType::kMultiplicativeBinaryOperator},
    {"/", TokenType::kMultiplicativeBinaryOperator},
    {"%", TokenType::kMultiplicativeBinaryOperator},
    {"=", TokenType::kEquals},
};

class Lexer {
 public:
  explicit Lexer(const std::string& original) : original_(original), src_(preprocess(original)), s_(src_.text) {
    line_starts_.push_back(0);
    for (size_t k = 0; k < original_.size(); ++k) {
      if (original_[k] == '\n') line_starts_.push_back(k + 1);
    }
  }

  std::vector<Token> run();
  // The tokens read before a failure.
  std::vector<Token> take_tokens() { return std::move(tokens_); }

 private:
  [[noreturn]] void error(size_t at, const std::string& what) const {
    auto [line, col] = line_col(at);
    fail("{}: {}", position(line, col), what);
  }
  std::pair<int, int> line_col(size_t at) const {
    size_t orig = std::min(src_.origin[std::min(at, src_.origin.size() - 1)], original_.size());
    // Line: how many line starts lie at or before `orig`; column: characters since that start.
    auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), orig);
    size_t start = *(it - 1);
    // Tokens come in source order: continue counting from the previous token when it lies on
    // the same line, so that one long line costs linear time (10^5 tokens on a line were quadratic).
    size_t from = start;
    int col = 1;
    if (last_line_start_ == start && last_orig_ <= orig) {
      from = last_orig_;
      col = last_col_;
    }
    for (size_t k = from; k < orig; ++k) {
      if ((static_cast<unsigned char>(original_[k]) & 0xC0) != 0x80) ++col;
    }
    last_line_start_ = start;
    last_orig_ = orig;
    last_col_ = col;
    return {static_cast<int>(it - line_starts_.begin()), col};
  }
  mutable size_t last_line_start_ = SIZE_MAX, last_orig_ = 0;
  mutable int last_col_ = 1;
  void push(std::string value, TokenType type, size_t at) {
    auto [line, col] = line_col(at);
    tokens_.push_back({std::move(value), type, line, col});
  }
  bool starts(const char* seq) const { return s_.compare(pos_, std::char_traits<char>::length(seq), seq) == 0; }
  bool space_at(size_t i) const {
    if (i >= s_.size()) return false;
    size_t k = i;
    return js_is_space(next_code_point(s_, k));
  }
  void skip_spaces() {
    while (space_at(pos_)) next_code_point(s_, pos_);
  }
  void strip_trailing_whitespace() {
    if (!tokens_.empty() && tokens_.back().type == TokenType::kText) {
      tokens_.back().value = js_trim(tokens_.back().value, false, true);
      if (tokens_.back().value.empty()) tokens_.pop_back();
    }
  }
  std::string string_literal(char quote);

  const std::string& original_;
  std::vector<size_t> line_starts_;  // byte offsets in original_
  Source src_;
  const std::string& s_;
  size_t pos_ = 0;
  int curly_depth_ = 0;
  std::vector<Token> tokens_;
};

std::string Lexer::string_literal(char quote) {
  size_t start = pos_;
  std::string out;
  while (true) {
    if (pos_ >= s_.size()) error(start, "unterminated string literal");
    char c = s_[pos_];
    if (c == quote) break;
    if (c == '\\') {
      if (++pos_ >= s_.size()) error(start, "unterminated string literal");
      char e = s_[pos_++];
      if (e == 'x' || e == 'u') {
        size_t n = e == 'x' ? 2 : 4;
        std::string hex = s_.substr(pos_, n);
        if (hex.size() != n || hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) {
          error(pos_ - 2, fmt::format("invalid escape \\{}{}", e, hex));
        }
        char32_t cp = static_cast<char32_t>(std::stoul(hex, nullptr, 16));
        pos_ += n;
        // A UTF-16 surrogate pair written as two \u escapes.
        if (cp >= 0xD800 && cp <= 0xDBFF && s_.compare(pos_, 2, "\\u") == 0) {
          std::string lo = s_.substr(pos_ + 2, 4);
          if (lo.size() == 4 && lo.find_first_not_of("0123456789abcdefABCDEF") == std::string::npos) {
            char32_t low = static_cast<char32_t>(std::stoul(lo, nullptr, 16));
            if (low >= 0xDC00 && low <= 0xDFFF) {
              cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
              pos_ += 6;
            }
          }
        }
        if (cp >= 0xD800 && cp <= 0xDFFF) error(pos_, "lone surrogate in string escape");
        append_utf8(out, cp);
        continue;
      }
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'v': out += '\v'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        default: error(pos_ - 2, fmt::format("unexpected escaped character '{}'", e));
      }
      continue;
    }
    out += c;
    ++pos_;
  }
  ++pos_;  // closing quote
  return out;
}

std::vector<Token> Lexer::run() {
  while (pos_ < s_.size()) {
    TokenType last = tokens_.empty() ? TokenType::kText : tokens_.back().type;
    if (tokens_.empty() || last == TokenType::kCloseStatement || last == TokenType::kCloseExpression ||
        last == TokenType::kComment) {
      size_t start = pos_;
      while (pos_ < s_.size() && !(s_[pos_] == '{' && pos_ + 1 < s_.size() &&
                                   (s_[pos_ + 1] == '%' || s_[pos_ + 1] == '{' || s_[pos_ + 1] == '#'))) {
        ++pos_;
      }
      if (pos_ > start) {
        push(s_.substr(start, pos_ - start), TokenType::kText, start);
        continue;
      }
    }
    if (starts("{#")) {
      size_t start = pos_;
      pos_ += 2;
      bool strip_before = pos_ < s_.size() && s_[pos_] == '-';
      if (strip_before) ++pos_;
      size_t end = s_.find("#}", pos_);
      if (end == std::string::npos) error(start, "comment is not closed with '#}'");
      std::string comment = s_.substr(pos_, end - pos_);
      bool strip_after = !comment.empty() && comment.back() == '-';
      if (strip_before) strip_trailing_whitespace();
      push(comment, TokenType::kComment, start);
      pos_ = end + 2;
      if (strip_after) skip_spaces();
      continue;
    }
    if (starts("{%+")) {
      push("{%", TokenType::kOpenStatement, pos_);
      pos_ += 3;
      continue;
    }
    if (starts("{%-")) {
      strip_trailing_whitespace();
      push("{%", TokenType::kOpenStatement, pos_);
      pos_ += 3;
      continue;
    }
    if (starts("{{-")) {
      strip_trailing_whitespace();
      push("{{", TokenType::kOpenExpression, pos_);
      curly_depth_ = 0;
      pos_ += 3;
      continue;
    }
    skip_spaces();
    if (pos_ >= s_.size()) break;
    if (starts("+%}")) {
      push("%}", TokenType::kCloseStatement, pos_);
      pos_ += 3;
      continue;
    }
    if (starts("-%}")) {
      push("%}", TokenType::kCloseStatement, pos_);
      pos_ += 3;
      skip_spaces();
      continue;
    }
    if (starts("-}}")) {
      push("}}", TokenType::kCloseExpression, pos_);
      pos_ += 3;
      skip_spaces();
      continue;
    }
    char c = s_[pos_];
    if (c == '-' || c == '+') {
      if (tokens_.empty() || tokens_.back().type == TokenType::kText) error(pos_, fmt::format("unexpected character '{}'", c));
      TokenType lt = tokens_.back().type;
      if (lt != TokenType::kIdentifier && lt != TokenType::kNumericLiteral && lt != TokenType::kStringLiteral &&
          lt != TokenType::kCloseParen && lt != TokenType::kCloseSquareBracket) {
        size_t start = pos_++;
        std::string num;
        while (pos_ < s_.size() && is_digit(s_[pos_])) num += s_[pos_++];
        if (!num.empty() && pos_ + 1 < s_.size() && s_[pos_] == '.' && is_digit(s_[pos_ + 1])) {
          ++pos_;
          num += '.';
          while (pos_ < s_.size() && is_digit(s_[pos_])) num += s_[pos_++];
        }
        push(std::string(1, c) + num, num.empty() ? TokenType::kUnaryOperator : TokenType::kNumericLiteral, start);
        continue;
      }
    }
    bool matched = false;
    for (const Mapping& m : kMappings) {
      if (std::string_view(m.seq) == "}}" && curly_depth_ > 0) continue;
      if (starts(m.seq)) {
        push(m.seq, m.type, pos_);
        if (m.type == TokenType::kOpenExpression) curly_depth_ = 0;
        if (m.type == TokenType::kOpenCurlyBracket) ++curly_depth_;
        if (m.type == TokenType::kCloseCurlyBracket) --curly_depth_;
        pos_ += std::char_traits<char>::length(m.seq);
        matched = true;
        break;
      }
    }
    if (matched) continue;
    if (c == '\'' || c == '"') {
      size_t start = pos_++;
      std::string str = string_literal(c);
      push(std::move(str), TokenType::kStringLiteral, start);
      continue;
    }
    if (is_digit(c)) {
      size_t start = pos_;
      std::string num;
      while (pos_ < s_.size() && is_digit(s_[pos_])) num += s_[pos_++];
      bool after_dot = !tokens_.empty() && tokens_.back().type == TokenType::kDot;
      if (!after_dot && pos_ + 1 < s_.size() && s_[pos_] == '.' && is_digit(s_[pos_ + 1])) {
        ++pos_;
        num += '.';
        while (pos_ < s_.size() && is_digit(s_[pos_])) num += s_[pos_++];
      }
      // An exponent (1e3, 2.5E-4) makes a float literal, as in jinja2.
      if (!after_dot && pos_ + 1 < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
        size_t k = pos_ + 1;
        if (k < s_.size() && (s_[k] == '+' || s_[k] == '-')) ++k;
        if (k < s_.size() && is_digit(s_[k])) {
          num += 'e';
          num.append(s_, pos_ + 1, k - pos_ - 1);
          pos_ = k;
          while (pos_ < s_.size() && is_digit(s_[pos_])) num += s_[pos_++];
        }
      }
      push(num, TokenType::kNumericLiteral, start);
      continue;
    }
    if (is_word(c)) {
      size_t start = pos_;
      while (pos_ < s_.size() && is_word(s_[pos_])) ++pos_;
      push(s_.substr(start, pos_ - start), TokenType::kIdentifier, start);
      continue;
    }
    error(pos_, fmt::format("unexpected character '{}'", c));
  }
  return std::move(tokens_);
}

}  // namespace

std::string position(int line, int column) { return fmt::format("chat template line {}, column {}", line, column); }

std::vector<Token> tokenize(const std::string& source) {
  Lexer lexer(source);
  try {
    return lexer.run();
  } catch (const Error& e) {
    std::vector<Token> tokens = lexer.take_tokens();
    Token bad{e.what(), TokenType::kError};
    if (!tokens.empty()) bad.line = tokens.back().line, bad.column = tokens.back().column;
    tokens.push_back(std::move(bad));
    return tokens;
  }
}

}  // namespace dsv3::jinja
