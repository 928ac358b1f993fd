// What chat and generate give the chat template besides the user's text: a conversation from a
// file (--messages), tool definitions (--tools), extra template variables (--template-kwargs,
// e.g. V3.1's {"thinking": true}); and the checks every prompt passes before it is encoded
// (valid UTF-8, reported by where the text came from; a BOS not added twice).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace dsv3::cli {

using Json = nlohmann::ordered_json;

struct TemplateFlags {
  std::string messages_file;    // --messages FILE.json
  std::string tools_file;       // --tools FILE.json
  std::string template_kwargs;  // --template-kwargs JSON
  std::string chat_template;    // --chat-template FILE
};

// Adds --messages (with `messages_help`), --tools, --template-kwargs and --chat-template.
void add_template_flags(CLI::App* sub, TemplateFlags& f, const std::string& messages_help);

// The template variables of --tools and --template-kwargs: {"tools": [...], ...kwargs}.
Json template_variables(const TemplateFlags& f);

// The chat template: --chat-template FILE, else the tokenizer's (chat_template.jinja, else
// tokenizer_config.json's); of a list of named templates, "tool_use" when tools are given (as
// transformers picks), else "default".
ChatTemplate make_chat_template(const Tokenizer& tok, const TemplateFlags& f, bool with_tools);

// A conversation: a JSON list of messages, or {"messages": [...], other template variables}.
// Messages are checked (objects with a string 'role'; string content valid UTF-8). `what` names
// the source in errors ("conv.json", "prompts.jsonl:4").
struct Conversation {
  Json messages = Json::array();
  Json variables = Json::object();
};
Conversation parse_conversation(const Json& j, const std::string& what);
Conversation read_conversation_file(const std::string& path);

// Throws Error "WHERE: not valid UTF-8: byte 0xFF at byte 7 of the text" when `text` is not.
void require_utf8(std::string_view text, const std::string& where);

// Encodes text given as it is (--raw): BOS (when the tokenizer adds one) unless the text
// already starts with it, in which case `warn` gets a note (llama.cpp warns the same way); EOS
// when the tokenizer adds one.
std::vector<int32_t> encode_raw_prompt(const Tokenizer& tok, std::string_view text, std::string* warn);

}  // namespace dsv3::cli
