#include "tokenizer/added_tokens.h"

#include <algorithm>
#include <cstring>

#include "tokenizer/utf8.h"

namespace dsv3 {
namespace {

// Rust regex's Unicode \w: Alphabetic, marks, decimal numbers, connector punctuation, joiners.
constexpr const char* kWordClass = "[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}]";

// Byte offset where the trailing run of white space in `s` begins.
size_t trailing_space_begin(std::string_view s) {
  size_t begin = s.size();
  size_t i = 0;
  while (i < s.size()) {
    size_t at = i;
    char32_t c = next_code_point(s, i);
    if (!is_unicode_white_space(c)) {
      begin = s.size();
    } else if (begin == s.size()) {
      begin = at;
    }
  }
  return begin;
}

size_t leading_space_length(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    size_t at = i;
    if (!is_unicode_white_space(next_code_point(s, i))) return at;
  }
  return s.size();
}

}  // namespace

AddedTokens::AddedTokens(std::vector<AddedToken> tokens) : tokens_(std::move(tokens)) {
  for (size_t i = 0; i < tokens_.size(); ++i) {
    const AddedToken& t = tokens_[i];
    if (t.content.empty()) continue;
    insert(t.normalized ? normalized_ : raw_, t.content, static_cast<int32_t>(i));
  }
  word_start_ = std::make_unique<Regex>(std::string("\\A") + kWordClass, "added token word check");
  word_end_ = std::make_unique<Regex>(std::string(kWordClass) + "\\z", "added token word check");
}

const AddedToken* AddedTokens::find_id(int32_t id) const {
  for (const AddedToken& t : tokens_) {
    if (t.id == id) return &t;
  }
  return nullptr;
}

const AddedToken* AddedTokens::find_content(std::string_view content) const {
  for (const AddedToken& t : tokens_) {
    if (t.content == content) return &t;
  }
  return nullptr;
}

void AddedTokens::insert(Matcher& m, const std::string& content, int32_t token) {
  int32_t node = 0;
  for (unsigned char c : content) {
    auto& ch = m.nodes[node].children;
    auto it = std::lower_bound(ch.begin(), ch.end(), c, [](const auto& p, unsigned char b) { return p.first < b; });
    if (it == ch.end() || it->first != c) {
      int32_t next = static_cast<int32_t>(m.nodes.size());
      it = ch.insert(it, {c, next});
      m.nodes.emplace_back();  // invalidates `ch`, not the index we hold
    }
    node = it->second;
  }
  // The first of two tokens with the same content wins.
  if (m.nodes[node].token < 0) m.nodes[node].token = token;
  auto first = static_cast<unsigned char>(content[0]);
  m.single_first_byte = !m.any ? first : m.single_first_byte == first ? first : -2;
  m.first_byte[first] = true;
  m.any = true;
}

int32_t AddedTokens::longest_at(const Matcher& m, std::string_view text, size_t pos) const {
  if (!m.first_byte[static_cast<unsigned char>(text[pos])]) return -1;
  int32_t node = 0, best = -1;
  for (size_t i = pos; i < text.size(); ++i) {
    const auto& ch = m.nodes[node].children;
    unsigned char c = static_cast<unsigned char>(text[i]);
    auto it = std::lower_bound(ch.begin(), ch.end(), c, [](const auto& p, unsigned char b) { return p.first < b; });
    if (it == ch.end() || it->first != c) break;
    node = it->second;
    if (m.nodes[node].token >= 0) best = m.nodes[node].token;
  }
  return best;
}

void AddedTokens::split(std::string_view text, bool normalized, std::vector<Span>& out) const {
  const Matcher& m = normalized ? normalized_ : raw_;
  if (!m.any) {
    if (!text.empty()) out.push_back({0, text.size(), -1});
    return;
  }
  // The matches are found as one non-overlapping leftmost-longest scan of the text; the
  // strip adjustments below do not move where the scan resumes (as in Hugging Face).
  size_t start_offset = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    if (m.single_first_byte >= 0) {
      const void* hit = std::memchr(text.data() + pos, m.single_first_byte, text.size() - pos);
      if (!hit) break;
      pos = static_cast<const char*>(hit) - text.data();
    } else if (!m.first_byte[static_cast<unsigned char>(text[pos])]) {
      ++pos;
      continue;
    }
    int32_t k = longest_at(m, text, pos);
    if (k < 0) {
      ++pos;
      continue;
    }
    const AddedToken& t = tokens_[k];
    size_t start = pos, stop = pos + t.content.size();
    pos = stop;
    if (t.single_word) {
      bool start_ok = start == 0 || !word_end_->search(text.substr(0, start));
      bool stop_ok = stop == text.size() || !word_start_->search(text.substr(stop));
      if (!start_ok || !stop_ok) continue;
    }
    if (t.lstrip) start = std::max(trailing_space_begin(text.substr(0, start)), start_offset);
    if (t.rstrip) stop += leading_space_length(text.substr(stop));
    if (start_offset < start) out.push_back({start_offset, start, -1});
    out.push_back({start, stop, t.id});
    start_offset = stop;
  }
  if (start_offset < text.size()) out.push_back({start_offset, text.size(), -1});
}

}  // namespace dsv3
