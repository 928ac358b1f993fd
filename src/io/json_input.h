// JSON written by users (prompt files, message and tool files, JSONL lines): parsed as Python's
// json module and Hugging Face do, where nlohmann's parser would refuse the whole document. The
// one difference today: an escaped UTF-16 surrogate without its partner ("\ud83d" alone) is a
// valid JSON string for Python, and reaches the tokenizer as U+FFFD; nlohmann rejects it.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace dsv3 {

// `text` with every lone surrogate escape (\uD800-\uDFFF not forming a high-low pair) replaced
// by \uFFFD; escaped pairs, other escapes and raw bytes are kept as they are.
std::string replace_lone_surrogates(std::string_view text);

// Parses user-written JSON (object key order kept); `what` names it in errors ("prompts.jsonl:3:
// invalid JSON: ..."). Lone surrogates become U+FFFD.
nlohmann::ordered_json parse_user_json(std::string_view text, const std::string& what);

}  // namespace dsv3
