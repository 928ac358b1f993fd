#include "apps/cli/prompt_input.h"

#include "base/error.h"
#include "io/json_file.h"
#include "io/json_input.h"
#include "tokenizer/utf8.h"

namespace dsv3::cli {

void add_template_flags(CLI::App* sub, TemplateFlags& f, const std::string& messages_help) {
  sub->add_option("--messages", f.messages_file, messages_help);
  sub->add_option("--tools", f.tools_file,
                  "JSON file with a list of tool definitions (OpenAI's {\"type\": \"function\", \"function\": {...}}), "
                  "given to the chat template as 'tools'");
  sub->add_option("--template-kwargs", f.template_kwargs,
                  "JSON object of extra chat-template variables, e.g. '{\"thinking\": true}' (DeepSeek-V3.1)");
  sub->add_option("--chat-template", f.chat_template,
                  "Jinja file to use as the chat template instead of the model's (chat_template.jinja, else "
                  "tokenizer_config.json's; with tools, its 'tool_use' template when it has one)");
}

ChatTemplate make_chat_template(const Tokenizer& tok, const TemplateFlags& f, bool with_tools) {
  const TokenizerConfig& c = tok.config();
  if (!f.chat_template.empty()) {
    const std::string source = read_text_file(f.chat_template);
    return with_context(f.chat_template,
                        [&] { return ChatTemplate(source, c.bos_token.value_or(""), c.eos_token.value_or("")); });
  }
  const bool tool_use = with_tools && c.chat_templates.count("tool_use");
  return ChatTemplate::from_config(c, tool_use ? "tool_use" : "");
}

Json template_variables(const TemplateFlags& f) {
  Json vars = Json::object();
  if (!f.template_kwargs.empty()) {
    vars = parse_user_json(f.template_kwargs, "--template-kwargs");
    if (!vars.is_object()) fail("--template-kwargs: expected a JSON object, got {}", vars.dump());
    for (const char* reserved : {"messages", "add_generation_prompt"})
      if (vars.contains(reserved)) fail("--template-kwargs: '{}' is set by dsv3, not by this flag", reserved);
  }
  if (!f.tools_file.empty()) {
    const Json tools = parse_user_json(read_text_file(f.tools_file), f.tools_file);
    if (!tools.is_array()) fail("{}: expected a JSON list of tool definitions, got {}", f.tools_file, tools.type_name());
    for (size_t i = 0; i < tools.size(); ++i)
      if (!tools[i].is_object()) fail("{}: tool {} is not an object", f.tools_file, i);
    vars["tools"] = tools;
  }
  return vars;
}

Conversation parse_conversation(const Json& j, const std::string& what) {
  Conversation c;
  if (j.is_array()) {
    c.messages = j;
  } else if (j.is_object() && j.contains("messages")) {
    c.messages = j["messages"];
    for (const auto& [k, v] : j.items())
      if (k != "messages") c.variables[k] = v;
    if (c.variables.contains("add_generation_prompt"))
      fail("{}: 'add_generation_prompt' is set by dsv3 (true: the model replies)", what);
  } else {
    fail("{}: expected a list of messages or an object with 'messages', got {}", what, j.type_name());
  }
  if (!c.messages.is_array()) fail("{}: 'messages' must be a list", what);
  for (size_t i = 0; i < c.messages.size(); ++i) {
    Json& m = c.messages[i];
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
      fail("{}: message {} must be an object with a string 'role'", what, i);
    // Content as a list of {"type": "text", "text": ...} parts is joined into one string, as vLLM,
    // SGLang and our server do before the template sees it.
    if (auto it = m.find("content"); it != m.end() && it->is_array()) {
      std::string text;
      for (size_t k = 0; k < it->size(); ++k) {
        const Json& part = (*it)[k];
        if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string())
          fail("{}: message {} content part {}: only {{\"type\": \"text\", \"text\": ...}} parts are supported, got {}",
               what, i, k, part.dump());
        text += part["text"].get<std::string>();
      }
      *it = text;
    }
    // Tool-call arguments given as an object become the JSON string OpenAI clients send (the
    // family's templates concatenate them as text).
    if (auto tc = m.find("tool_calls"); tc != m.end() && tc->is_array())
      for (auto& call : *tc)
        if (call.is_object() && call.contains("function") && call["function"].is_object())
          if (auto args = call["function"].find("arguments"); args != call["function"].end() && args->is_structured())
            *args = args->dump();
  }
  return c;
}

Conversation read_conversation_file(const std::string& path) {
  return parse_conversation(parse_user_json(read_text_file(path), path), path);
}

void require_utf8(std::string_view text, const std::string& where) {
  const size_t bad = find_invalid_utf8(text);
  if (bad != std::string_view::npos)
    fail("{}: not valid UTF-8: byte 0x{:02X} at byte {} of the text", where, static_cast<unsigned char>(text[bad]),
         bad + 1);
}

std::vector<int32_t> encode_raw_prompt(const Tokenizer& tok, std::string_view text, std::string* warn) {
  std::vector<int32_t> ids = tok.encode(text, /*add_special=*/false);
  const TokenizerConfig& c = tok.config();
  if (c.add_bos_token && tok.bos_id() >= 0) {
    if (!ids.empty() && ids.front() == tok.bos_id()) {
      if (warn)
        *warn = fmt::format("the prompt already starts with the BOS token {}; not adding a second one",
                            c.bos_token.value_or(""));
    } else {
      ids.insert(ids.begin(), tok.bos_id());
    }
  }
  if (c.add_eos_token && tok.eos_id() >= 0) ids.push_back(tok.eos_id());
  return ids;
}

}  // namespace dsv3::cli
