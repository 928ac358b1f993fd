// UTF-8 helpers shared by the tokenizer and the chat-template interpreter.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace dsv3 {

// Returns the byte offset of the first byte that does not start a well-formed UTF-8 sequence
// (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF), or npos when `s` is valid.
size_t find_invalid_utf8(std::string_view s);

// Decodes the code point starting at s[i] (which must be valid UTF-8) and advances i.
char32_t next_code_point(std::string_view s, size_t& i);

// Appends the UTF-8 encoding of `cp` to `out`.
void append_utf8(std::string& out, char32_t cp);

// Rust's String::from_utf8_lossy: each maximal ill-formed subsequence becomes one U+FFFD
// (Unicode "substitution of maximal subparts"), which Hugging Face's decoders rely on.
std::string utf8_lossy(std::string_view bytes);

// Length of the longest prefix of `s` made of complete UTF-8 sequences, treating an
// incomplete but still possibly valid sequence at the end as "not yet complete".
size_t complete_utf8_prefix(std::string_view s);

// Unicode White_Space (PropList.txt): what Rust's and Oniguruma's \s match.
bool is_unicode_white_space(char32_t c);

}  // namespace dsv3
