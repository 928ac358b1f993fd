#include "tokenizer/chat_template.h"

#include "base/error.h"
#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/interpreter.h"
#include "tokenizer/jinja/lexer.h"

namespace dsv3 {

namespace {
// jinja2 reads "\r\n" and "\r" in a template as "\n" (its lexer's newline normalisation), so a
// template saved with Windows line ends renders as the same template with "\n".
std::string normalise_newlines(const std::string& source) {
  if (source.find('\r') == std::string::npos) return source;
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] != '\r') {
      out += source[i];
    } else {
      out += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    }
  }
  return out;
}
}  // namespace

ChatTemplate::ChatTemplate(const std::string& source, std::string bos_token, std::string eos_token,
                           const jinja::RenderLimits& limits)
    : program_(std::make_shared<const jinja::Program>(
          jinja::parse(jinja::tokenize(normalise_newlines(source)), limits.max_nesting))),
      bos_token_(std::move(bos_token)),
      eos_token_(std::move(eos_token)),
      limits_(limits) {}

ChatTemplate ChatTemplate::from_config(const TokenizerConfig& config, const std::string& name,
                                       const jinja::RenderLimits& limits) {
  return with_context(config.chat_template_source, [&] {
    return ChatTemplate(config.chat_template(name), config.bos_token.value_or(""), config.eos_token.value_or(""),
                        limits);
  });
}

std::string ChatTemplate::render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                                 const nlohmann::ordered_json& extra_vars) const {
  if (!extra_vars.is_object() && !extra_vars.is_null()) fail("chat template variables must be a JSON object");
  jinja::Scope globals;
  jinja::Interpreter::add_builtins(globals);
  globals.set("bos_token", jinja::Value::string(bos_token_));
  globals.set("eos_token", jinja::Value::string(eos_token_));
  globals.set("messages", jinja::from_json(messages));
  globals.set("add_generation_prompt", jinja::Value::boolean(add_generation_prompt));
  // transformers renders with tools=None and documents=None when none are given, so
  // `tools is defined` holds and `tools | tojson` prints null (render_jinja_template).
  globals.set("tools", jinja::Value::null());
  globals.set("documents", jinja::Value::null());
  if (extra_vars.is_object()) {
    for (const auto& [k, v] : extra_vars.items()) globals.set(k, jinja::from_json(v));
  }
  jinja::Interpreter interpreter(limits_);
  return interpreter.render(*program_, globals);
}

}  // namespace dsv3
