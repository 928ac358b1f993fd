// Chat templates: renders tokenizer_config.json's `chat_template` (Jinja) the way transformers
// does (trim_blocks and lstrip_blocks on), byte for byte as its Python jinja2 does.
//
//   ChatTemplate t = ChatTemplate::from_config(tokenizer.config());
//   std::string prompt = t.render(messages, /*add_generation_prompt=*/true);
//
// Messages are nlohmann::ordered_json so that objects keep their key order (tojson prints it).
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "tokenizer/jinja/limits.h"
#include "tokenizer/tokenizer_config.h"

namespace dsv3 {

namespace jinja {
struct Program;
}

class ChatTemplate {
 public:
  // Parses `source`; an unsupported construct or a syntax error throws Error naming line and
  // column ("chat template line 3, column 12: unsupported statement 'call'").
  // `limits` bound parsing and every render (jinja/limits.h); exceeding one is an Error naming it.
  explicit ChatTemplate(const std::string& source, std::string bos_token = "", std::string eos_token = "",
                        const jinja::RenderLimits& limits = {});
  // The config's template called `name` ("" = default) with its bos/eos tokens.
  static ChatTemplate from_config(const TokenizerConfig& config, const std::string& name = "",
                                  const jinja::RenderLimits& limits = {});

  // Renders with the variables messages, add_generation_prompt, bos_token, eos_token, tools and
  // documents (none unless given, as transformers passes them), and the entries of `extra_vars`
  // (an object; its entries win). Runtime errors, including the
  // template's own raise_exception(), throw Error.
  std::string render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                     const nlohmann::ordered_json& extra_vars = nlohmann::ordered_json::object()) const;

 private:
  std::shared_ptr<const jinja::Program> program_;
  std::string bos_token_, eos_token_;
  jinja::RenderLimits limits_;
};

}  // namespace dsv3
