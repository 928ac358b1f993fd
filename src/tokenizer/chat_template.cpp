#include "tokenizer/chat_template.h"

#include "base/error.h"

namespace dsv3 {
namespace jinja {
struct Program {};
}
ChatTemplate::ChatTemplate(const std::string& source, std::string bos_token, std::string eos_token)
    : bos_token_(std::move(bos_token)), eos_token_(std::move(eos_token)) {}
ChatTemplate ChatTemplate::from_config(const TokenizerConfig& config, const std::string& name) {
  return ChatTemplate(config.chat_template(name), config.bos_token.value_or(""), config.eos_token.value_or(""));
}
std::string ChatTemplate::render(const nlohmann::json&, bool, const nlohmann::json&) const { fail("not yet"); }
}  // namespace dsv3
