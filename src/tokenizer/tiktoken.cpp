#include "tokenizer/tiktoken.h"

#include <limits>
#include <queue>

#include "base/error.h"
#include "tokenizer/regex.h"
#include "tokenizer/utf8.h"

namespace dsv3 {

namespace {

// RFC 4648 base64 (tiktoken writes padded standard base64).
std::optional<std::string> base64_decode(std::string_view s) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  if (s.empty() || s.size() % 4) return std::nullopt;
  std::string out;
  out.reserve(s.size() / 4 * 3);
  for (size_t i = 0; i < s.size(); i += 4) {
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = s[i + size_t(k)];
      if (c == '=' && i + 4 == s.size() && k >= 2) {
        v[k] = 0;
        ++pad;
        continue;
      }
      if (pad || (v[k] = value(c)) < 0) return std::nullopt;
    }
    const uint32_t n = uint32_t(v[0]) << 18 | uint32_t(v[1]) << 12 | uint32_t(v[2]) << 6 | uint32_t(v[3]);
    out += char(n >> 16);
    if (pad < 2) out += char((n >> 8) & 0xFF);
    if (pad < 1) out += char(n & 0xFF);
  }
  return out;
}

// Split patterns as tiktoken defines them (fancy-regex syntax; see tiktoken_pattern()).
// Kimi-K2 / Moonlight: TikTokenTokenizer.pat_str in the checkpoints' tokenization_kimi.py. Its
// class intersections [X&&[^\p{Han}]] are written here as (?:(?!\p{sc:Han})[X]), which PCRE2
// reads; sc: because a bare \p{Han} in PCRE2 (10.40+) tests Script_Extensions, where tiktoken's
// Rust regex tests Script (U+3002 IDEOGRAPHIC FULL STOP is Common, with Han among its extensions).
constexpr const char* kKimiPattern =
    R"([\p{sc:Han}]+)"
    R"(|[^\r\n\p{L}\p{N}]?(?:(?!\p{sc:Han})[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}])*(?:(?!\p{sc:Han})[\p{Ll}\p{Lm}\p{Lo}\p{M}])+(?i:'s|'t|'re|'ve|'m|'ll|'d)?)"
    R"(|[^\r\n\p{L}\p{N}]?(?:(?!\p{sc:Han})[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}])+(?:(?!\p{sc:Han})[\p{Ll}\p{Lm}\p{Lo}\p{M}])*(?i:'s|'t|'re|'ve|'m|'ll|'d)?)"
    R"(|\p{N}{1,3})"
    R"(| ?[^\s\p{L}\p{N}]+[\r\n]*)"
    R"(|\s*[\r\n]+)"
    R"(|\s+(?!\S))"
    R"(|\s+)";
// OpenAI's, from tiktoken_ext/openai_public.py (the npm package's encoders/*.json pat_str).
constexpr const char* kO200kPattern =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?)"
    R"(|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?)"
    R"(|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kCl100kPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

}  // namespace

TiktokenBpe::TiktokenBpe(std::string_view text, const std::string& name) {
  std::vector<std::pair<std::string, int64_t>> entries;
  size_t line_no = 0, pos = 0;
  int64_t max_rank = -1;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    const size_t sp = line.find(' ');
    if (sp == std::string_view::npos)
      fail("{} line {}: expected \"BASE64 RANK\", got '{}'", name, line_no, line.substr(0, 60));
    const std::string_view b64 = line.substr(0, sp), rank_text = line.substr(sp + 1);
    auto bytes = base64_decode(b64);
    if (!bytes) fail("{} line {}: '{}' is not base64", name, line_no, b64.substr(0, 60));
    int64_t rank = 0;
    if (rank_text.empty() || rank_text.size() > 9 || rank_text.find_first_not_of("0123456789") != std::string_view::npos)
      fail("{} line {}: rank '{}' is not a non-negative integer", name, line_no, rank_text.substr(0, 20));
    for (char c : rank_text) rank = rank * 10 + (c - '0');
    max_rank = std::max(max_rank, rank);
    entries.emplace_back(std::move(*bytes), rank);
  }
  if (entries.empty()) fail("{}: no tokens (expected one \"BASE64 RANK\" line per token)", name);
  tokens_.resize(size_t(max_rank + 1));
  std::vector<bool> seen(tokens_.size(), false);
  for (auto& [bytes, rank] : entries) {
    if (seen[size_t(rank)]) fail("{}: rank {} is given to two tokens", name, rank);
    seen[size_t(rank)] = true;
    tokens_[size_t(rank)] = std::move(bytes);
  }
  ranks_.reserve(tokens_.size());
  for (size_t r = 0; r < tokens_.size(); ++r) {
    if (!seen[r]) continue;
    if (!ranks_.emplace(tokens_[r], int32_t(r)).second)
      fail("{}: the bytes of rank {} are also rank {}", name, r, ranks_[tokens_[r]]);
  }
  for (int b = 0; b < 256; ++b)
    if (rank_of(std::string(1, char(b))) < 0)
      fail("{}: byte 0x{:02X} has no token; tiktoken vocabularies hold every single byte", name, b);
}

int32_t TiktokenBpe::rank_of(std::string_view bytes) const {
  const auto it = ranks_.find(bytes);
  return it == ranks_.end() ? -1 : it->second;
}

void TiktokenBpe::encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.empty()) return;
  if (const int32_t r = rank_of(piece); r >= 0) {
    out.push_back(r);
    return;
  }
  // Parts are byte ranges [start[i], start[next[i]]) in a linked list; pair_rank[i] is the rank
  // of part i joined with its successor. A min-heap of (rank, start) finds the lowest rank, the
  // leftmost on ties (tiktoken's linear scan takes the first minimum), in O(n log n) where
  // tiktoken is quadratic; stale entries are skipped on pop.
  constexpr int32_t kNone = std::numeric_limits<int32_t>::max();
  const size_t n = piece.size();
  std::vector<uint32_t> next(n), prev(n);
  std::vector<int32_t> pair_rank(n, kNone);
  std::vector<bool> alive(n, true);
  auto end_of = [&](size_t i) { return next[i] == n ? n : size_t(next[i]); };
  auto rank_with_next = [&](size_t i) {
    if (next[i] == n) return kNone;
    const int32_t r = rank_of(piece.substr(i, end_of(next[i]) - i));
    return r < 0 ? kNone : r;
  };
  using Entry = std::pair<int32_t, uint32_t>;  // (rank, start)
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;
  for (size_t i = 0; i < n; ++i) {
    next[i] = uint32_t(i + 1);
    prev[i] = uint32_t(i == 0 ? n : i - 1);
  }
  for (size_t i = 0; i < n; ++i) {
    pair_rank[i] = rank_with_next(i);
    if (pair_rank[i] != kNone) heap.emplace(pair_rank[i], uint32_t(i));
  }
  while (!heap.empty()) {
    const auto [r, i] = heap.top();
    heap.pop();
    if (!alive[i] || pair_rank[i] != r) continue;
    const size_t j = next[i];  // merge part j into part i
    alive[j] = false;
    next[i] = next[j];
    if (next[j] != n) prev[next[j]] = uint32_t(i);
    pair_rank[i] = rank_with_next(i);
    if (pair_rank[i] != kNone) heap.emplace(pair_rank[i], i);
    if (prev[i] != n) {
      const size_t p = prev[i];
      pair_rank[p] = rank_with_next(p);
      if (pair_rank[p] != kNone) heap.emplace(pair_rank[p], uint32_t(p));
    }
  }
  for (size_t i = 0; i != n; i = next[i]) out.push_back(rank_of(piece.substr(i, end_of(i) - i)));
}

namespace {
// Python's str.isspace: the characters with Unicode bidirectional class WS, B or S, or in
// category Zs (the ASCII separators \x1c-\x1f included).
bool py_isspace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}
}  // namespace

void kimi_presplit(std::string_view text, const std::function<void(std::string_view)>& piece) {
  size_t at = 0;
  while (at < text.size()) {
    // One chunk of at most kKimiMaxEncodeChars code points, cut where a run grows too long.
    size_t i = at, start = at, n_chars = 0, run = 0;
    bool run_is_space = false;
    while (i < text.size() && n_chars < kKimiMaxEncodeChars) {
      const size_t here = i;
      const bool space = py_isspace(next_code_point(text, i));
      if (n_chars == 0) run_is_space = space;
      ++n_chars;
      if (space != run_is_space) {
        run = 1;
        run_is_space = space;
      } else if (++run > kKimiMaxRunChars) {
        piece(text.substr(start, here - start));
        start = here;
        run = 1;
      }
    }
    piece(text.substr(start, i - start));
    at = i;
  }
}

std::optional<std::string> tiktoken_pattern(std::string_view name) {
  if (name == "kimi") return onig_to_pcre2(kKimiPattern);
  if (name == "o200k_base") return onig_to_pcre2(kO200kPattern);
  if (name == "cl100k_base") return onig_to_pcre2(kCl100kPattern);
  return std::nullopt;
}

std::string resolve_tiktoken_pattern(const std::string& name_or_pattern) {
  if (auto p = tiktoken_pattern(name_or_pattern)) return *p;
  if (name_or_pattern.find("&&") != std::string::npos)
    fail("tiktoken pattern '{}': class intersections (&&) have no PCRE2 equivalent; write [X&&[^Y]] as "
         "(?:(?!Y)[X]), or use a named pattern (kimi, o200k_base, cl100k_base)",
         name_or_pattern);
  if (name_or_pattern.empty()) fail("tiktoken pattern: empty (names: kimi, o200k_base, cl100k_base)");
  return onig_to_pcre2(name_or_pattern);
}

}  // namespace dsv3
