// Chat templates: renders tokenizer_config.json's `chat_template` (Jinja) the way transformers
// does (trim_blocks and lstrip_blocks on), byte for byte as @huggingface/jinja does.
//
//   ChatTemplate t = ChatTemplate::from_config(tokenizer.config());
//   std::string prompt = t.render(messages, /*add_generation_prompt=*/true, {});
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "tokenizer/tokenizer_config.h"

namespace dsv3 {

namespace jinja {
struct Program;
}

class ChatTemplate {
 public:
  // Parses `source`; an unsupported construct or a syntax error throws Error naming line:column.
  explicit ChatTemplate(const std::string& source, std::string bos_token = "", std::string eos_token = "");
  // The config's template called `name` ("" = default) with its bos/eos tokens.
  static ChatTemplate from_config(const TokenizerConfig& config, const std::string& name = "");

  // Renders with variables messages, add_generation_prompt, bos_token, eos_token, and the
  // entries of `extra_vars` (an object; they override the others). Runtime errors (including
  // raise_exception) throw Error.
  std::string render(const nlohmann::json& messages, bool add_generation_prompt,
                     const nlohmann::json& extra_vars = nlohmann::json::object()) const;

 private:
  std::shared_ptr<const jinja::Program> program_;
  std::string bos_token_, eos_token_;
};

}  // namespace dsv3
