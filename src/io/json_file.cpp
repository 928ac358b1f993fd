#include "io/json_file.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <unordered_set>
#include <vector>

#include "base/error.h"

namespace dsv3 {

std::string read_text_file(const std::string& path, int64_t max_bytes) {
  // Checked before reading: a FIFO would block, /dev/zero or a sparse file of many GB would be
  // read until memory runs out.
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) fail("cannot open '{}': {}", path, std::strerror(errno));
  if (!S_ISREG(st.st_mode)) fail("'{}' is not a regular file", path);
  if (st.st_size > max_bytes)
    fail("'{}' is {} bytes, more than the {} MiB such a file may have", path, int64_t(st.st_size), max_bytes >> 20);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open '{}': {}", path, std::strerror(errno));
  std::string text(size_t(st.st_size), '\0');
  in.read(text.data(), std::streamsize(text.size()));
  if (in.gcount() != std::streamsize(text.size())) fail("cannot read '{}': {}", path, std::strerror(errno));
  return text;
}

void write_text_file(const std::string& path, std::string_view text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) fail("cannot create '{}': {}", path, std::strerror(errno));
  out.write(text.data(), std::streamsize(text.size()));
  if (!out) fail("cannot write '{}'", path);
}

void check_json_depth(std::string_view text, const std::string& what, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth)
        fail("'{}': JSON nests deeper than {} levels (at byte {}); refusing to parse it", what, max_depth, i);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
}

namespace {

// "[json.exception.parse_error.101] parse error at line 1, column 5: ..." -> "parse error at ..."
std::string strip_id(const std::string& msg) {
  const auto pos = msg.find("] ");
  return pos == std::string::npos ? msg : msg.substr(pos + 2);
}

template <typename Json>
Json parse_impl(std::string_view text, const std::string& what, const JsonLimits& limits) {
  check_json_depth(text, what, limits.max_depth);
  try {
    if (!limits.reject_duplicate_keys) return Json::parse(text);
    // One set of keys per open object; nlohmann reports each key before its value.
    std::vector<std::unordered_set<std::string>> keys;
    std::string duplicate;
    typename Json::parser_callback_t cb = [&](int, nlohmann::json::parse_event_t event, Json& parsed) {
      using E = nlohmann::json::parse_event_t;
      if (event == E::object_start) keys.emplace_back();
      if (event == E::object_end) keys.pop_back();
      if (event == E::key && !keys.empty() && !keys.back().insert(parsed.template get<std::string>()).second)
        fail("'{}': key '{}' appears twice in one object", what, parsed.template get<std::string>());
      return true;
    };
    return Json::parse(text, cb);
  } catch (const nlohmann::json::exception& e) {
    // parse_error (syntax) and out_of_range 406 (a number such as 1e999 beyond double range).
    fail("'{}': invalid JSON: {}", what, strip_id(e.what()));
  }
}

}  // namespace

nlohmann::json parse_json(std::string_view text, const std::string& what, const JsonLimits& limits) {
  return parse_impl<nlohmann::json>(text, what, limits);
}

nlohmann::ordered_json parse_ordered_json(std::string_view text, const std::string& what, const JsonLimits& limits) {
  return parse_impl<nlohmann::ordered_json>(text, what, limits);
}

nlohmann::json read_json_file(const std::string& path, const JsonLimits& limits) {
  return parse_json(read_text_file(path), path, limits);
}

}  // namespace dsv3
