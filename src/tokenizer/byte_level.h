// GPT-2's byte-level alphabet: each byte is shown as a printable character ("Ġ" for a space,
// "Ċ" for a newline) so that vocabularies can be written as text.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace dsv3 {

// The character that stands for byte `b` (GPT-2 bytes_to_unicode).
char32_t byte_level_char(unsigned char b);

// Maps a token written in the byte-level alphabet back to its bytes; nullopt when some
// character is not in the alphabet (such tokens keep their text, as Hugging Face's ByteLevel
// decoder does).
std::optional<std::string> byte_level_to_bytes(std::string_view token);

}  // namespace dsv3
