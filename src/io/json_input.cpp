#include "io/json_input.h"

#include "io/json_file.h"

#include "base/error.h"

namespace dsv3 {

namespace {

// The code unit of the \uXXXX escape at text[i] (text[i] == '\\', text[i + 1] == 'u'), or -1.
int escaped_unit(std::string_view text, size_t i) {
  if (i + 6 > text.size() || text[i] != '\\' || text[i + 1] != 'u') return -1;
  int v = 0;
  for (size_t k = i + 2; k < i + 6; ++k) {
    const char c = text[k];
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    else return -1;
    v = v * 16 + d;
  }
  return v;
}

}  // namespace

std::string replace_lone_surrogates(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] != '\\' || i + 1 >= text.size()) {
      out += text[i++];
      continue;
    }
    const int unit = escaped_unit(text, i);
    if (unit < 0xD800 || unit > 0xDFFF) {  // another escape (or a malformed one: the parser reports it)
      out.append(text.substr(i, 2));
      i += 2;
      continue;
    }
    const int low = unit <= 0xDBFF ? escaped_unit(text, i + 6) : -1;
    if (low >= 0xDC00 && low <= 0xDFFF) {
      out.append(text.substr(i, 12));
      i += 12;
    } else {
      out += "\\ufffd";
      i += 6;
    }
  }
  return out;
}

nlohmann::ordered_json parse_user_json(std::string_view text, const std::string& what) {
  // Depth-capped before parsing (json_file.h): a message nested 10^5 deep would overflow the stack.
  check_json_depth(text, what, JsonLimits{}.max_depth);
  try {
    return nlohmann::ordered_json::parse(replace_lone_surrogates(text));
  } catch (const nlohmann::json::exception& e) {
    std::string msg = e.what();  // "[json.exception.parse_error.101] parse error at line 1, column 5: ..."
    const auto pos = msg.find("] ");
    if (pos != std::string::npos) msg = msg.substr(pos + 2);
    fail("{}: invalid JSON: {}", what, msg);
  }
}

}  // namespace dsv3
