// Reading JSON files with errors that name the file, and typed field access that names the field.
//
// Every parse of untrusted JSON goes through parse_json: it refuses nesting deeper than
// JsonLimits::max_depth before nlohmann builds anything (copies, dumps and comparisons of a
// nlohmann value recurse per level, so 10^6 nested brackets would overflow the stack), and turns
// every nlohmann exception (syntax, a number beyond double range such as 1e999) into Error.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace dsv3 {

struct JsonLimits {
  // Deepest nesting of arrays and objects accepted. Real files nest < 10 levels (tokenizer.json
  // 6, a request with a tool schema ~20); the HTTP request parser uses the same bound.
  int max_depth = 256;
  // A key written twice in one object is an error (safetensors headers: a tensor must not be
  // described twice). Off by default: Python's json, like nlohmann, keeps the last value.
  bool reject_duplicate_keys = false;
};

// Parses the whole file; throws Error "'path': invalid JSON at byte N: ..." on failure.
nlohmann::json read_json_file(const std::string& path, const JsonLimits& limits = {});

// Throws Error "'what': invalid JSON: ..." on failure.
nlohmann::json parse_json(std::string_view text, const std::string& what, const JsonLimits& limits = {});
// The same into an insertion-ordered value (chat-template variables keep their key order).
nlohmann::ordered_json parse_ordered_json(std::string_view text, const std::string& what,
                                          const JsonLimits& limits = {});

// Throws Error "'what': JSON nests deeper than N levels at byte B" when `text` (JSON or not)
// opens more than `max_depth` arrays/objects outside strings. Linear time, no recursion.
void check_json_depth(std::string_view text, const std::string& what, int max_depth);

// A whole text file. Throws Error naming the file when it cannot be opened or read, is not a
// regular file (a directory, FIFO or device) or is larger than max_bytes (default 256 MiB: the
// largest tokenizer.json of the supported models is ~8 MB).
inline constexpr int64_t kMaxTextFileBytes = int64_t(256) << 20;
std::string read_text_file(const std::string& path, int64_t max_bytes = kMaxTextFileBytes);
void write_text_file(const std::string& path, std::string_view text);

}  // namespace dsv3
