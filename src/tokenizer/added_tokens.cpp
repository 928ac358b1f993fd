#include "tokenizer/added_tokens.h"

#include <algorithm>

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
    Matcher& m = t.normalized ? normalized_ : raw_;
    m.by_first_byte[static_cast<unsigned char>(t.content[0])].push_back(static_cast<int32_t>(i));
    m.any = true;
  }
  for (Matcher* m : {&raw_, &normalized_}) {
    for (auto& list : m->by_first_byte) {
      std::stable_sort(list.begin(), list.end(),
                       [&](int32_t a, int32_t b) { return tokens_[a].content.size() > tokens_[b].content.size(); });
    }
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

int32_t AddedTokens::longest_at(const Matcher& m, std::string_view text, size_t pos) const {
  for (int32_t i : m.by_first_byte[static_cast<unsigned char>(text[pos])]) {
    const std::string& c = tokens_[i].content;
    if (text.size() - pos >= c.size() && text.compare(pos, c.size(), c) == 0) return i;
  }
  return -1;
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
