#include "tokenizer/byte_level.h"

#include "tokenizer/utf8.h"

namespace dsv3 {
namespace {

// Bytes that are printable and not white space stand for themselves: '!'..'~', '¡'..'¬',
// '®'..'ÿ'. The other 68 bytes take U+0100 onwards, in byte order.
bool is_self(unsigned char b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE); }

}  // namespace

char32_t byte_level_char(unsigned char b) {
  if (is_self(b)) return b;
  int n = 0;
  for (int k = 0; k < b; ++k) n += is_self(static_cast<unsigned char>(k)) ? 0 : 1;
  return 0x100 + n;
}

std::optional<std::string> byte_level_to_bytes(std::string_view token) {
  std::string out;
  out.reserve(token.size());
  size_t i = 0;
  if (find_invalid_utf8(token) != std::string_view::npos) return std::nullopt;
  while (i < token.size()) {
    char32_t c = next_code_point(token, i);
    if (c < 0x100) {
      if (!is_self(static_cast<unsigned char>(c))) return std::nullopt;
      out += static_cast<char>(c);
    } else if (c < 0x100 + 68) {
      // The (c - 0x100)-th byte that does not stand for itself.
      int want = static_cast<int>(c - 0x100);
      for (int b = 0; b < 256; ++b) {
        if (!is_self(static_cast<unsigned char>(b)) && want-- == 0) {
          out += static_cast<char>(b);
          break;
        }
      }
    } else {
      return std::nullopt;
    }
  }
  return out;
}

}  // namespace dsv3
