#include "tokenizer/utf8.h"

#include <algorithm>

namespace dsv3 {
namespace {

// Length of the well-formed sequence starting at s[i], or 0 when the bytes there are not one.
// When `partial_ok` is set, a truncated sequence at the end of `s` reports -(bytes seen) instead.
int sequence_length(std::string_view s, size_t i, bool partial_ok) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  if (c < 0x80) return 1;
  int n;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  for (int k = 1; k < n; ++k) {
    if (i + k >= s.size()) return partial_ok ? -k : 0;
    unsigned char t = b(i + k);
    unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (t < l || t > h) return 0;
  }
  return n;
}

}  // namespace

size_t find_invalid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    int n = sequence_length(s, i, false);
    if (n <= 0) return i;
    i += n;
  }
  return std::string_view::npos;
}

char32_t next_code_point(std::string_view s, size_t& i) {
  auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) {
    ++i;
    return c;
  }
  int n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
  char32_t cp = c & (0x7F >> n);
  for (int k = 1; k < n && i + k < s.size(); ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  // A truncated sequence at the end must not move `i` past the end (fuzz_template: "{% \xAD").
  i = std::min(i + size_t(n), s.size());
  return cp;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::string utf8_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t i = 0;
  while (i < bytes.size()) {
    int n = sequence_length(bytes, i, true);
    if (n > 0) {
      out.append(bytes.substr(i, n));
      i += n;
    } else {
      // A maximal subpart: the lead byte plus the continuation bytes that were still valid.
      out += "\xEF\xBF\xBD";
      i += n < 0 ? -n : 1;
      if (n == 0) {
        // Skip the valid-so-far continuation bytes of a sequence broken later on.
        auto c = static_cast<unsigned char>(bytes[i - 1]);
        if (c >= 0xC2 && c <= 0xF4) {
          unsigned char lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
          unsigned char hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
          int need = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : 1;
          for (int k = 0; k < need && i < bytes.size(); ++k) {
            auto t = static_cast<unsigned char>(bytes[i]);
            unsigned char l = k == 0 ? lo : 0x80, h = k == 0 ? hi : 0xBF;
            if (t < l || t > h) break;
            ++i;
          }
        }
      }
    }
  }
  return out;
}

size_t complete_utf8_prefix(std::string_view s) {
  // Only the last (up to) 3 bytes can belong to an unfinished sequence.
  size_t start = s.size() > 3 ? s.size() - 3 : 0;
  for (size_t i = start; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0xC2 && c <= 0xF4) {
      int n = sequence_length(s, i, true);
      if (n < 0) return i;
    }
  }
  return s.size();
}

bool is_unicode_white_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

}  // namespace dsv3
