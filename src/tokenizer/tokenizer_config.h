// tokenizer_config.json: the parts of transformers' tokenizer settings that change encoding
// and chat rendering.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tokenizer/added_tokens.h"

namespace dsv3 {

struct TokenizerConfig {
  std::optional<std::string> bos_token, eos_token, pad_token, unk_token;  // token text
  // Absent: true for LlamaTokenizer(Fast), whose constructors default to it (transformers), else
  // false (PreTrainedTokenizerFast). DeepSeek-V3 sets true.
  bool add_bos_token = false;
  bool add_eos_token = false;
  std::optional<int64_t> model_max_length;
  std::string tokenizer_class;  // "" when absent
  // "added_tokens_decoder": {"163584": {"content": "[BOS]", "special": true, ...}}, in id order.
  // tokenizer.json carries the same tokens; a tiktoken tokenizer has only these.
  std::vector<AddedToken> added_tokens_decoder;
  // Named chat templates; a plain string is stored under "default".
  std::map<std::string, std::string> chat_templates;
  // Where the templates came from, as template errors name it (chat_template.jinja beside the
  // config wins over its field).
  std::string chat_template_source = "tokenizer_config.json: chat_template";

  // Parses the JSON object; `file` names it in error messages.
  static TokenizerConfig from_json(const nlohmann::json& j, const std::string& file);
  static TokenizerConfig load(const std::string& path);

  // The template called `name` ("" = "default"); fails when there is none.
  const std::string& chat_template(const std::string& name = "") const;
};

}  // namespace dsv3
