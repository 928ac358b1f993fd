// libFuzzer target: chat-template source, parsed and rendered with fixed messages under small
// limits (so each input finishes in milliseconds; the limits themselves are what is tested).
// Any outcome but a rendered string or dsv3::Error is a finding.
#include <cstddef>
#include <cstdint>
#include <string>

#include "base/error.h"
#include "tokenizer/chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const nlohmann::ordered_json messages = nlohmann::ordered_json::parse(R"([
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi <b>there</b> ünïcödé 🙂"},
    {"role": "assistant", "content": "", "tool_calls": [{"type": "function",
      "function": {"name": "f", "arguments": "{\"x\": 1}"}}], "reasoning_content": "think"},
    {"role": "tool", "content": "42"}])");
  static const nlohmann::ordered_json extra = nlohmann::ordered_json::parse(
      R"({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}], "thinking": true})");
  dsv3::jinja::RenderLimits limits;
  limits.max_steps = 20000;
  limits.max_items = 20000;
  limits.max_string_bytes = 1 << 20;
  limits.max_total_bytes = 32 << 20;
  limits.max_seconds = 1.0;
  try {
    const dsv3::ChatTemplate t(std::string(reinterpret_cast<const char*>(data), size), "<s>", "</s>", limits);
    (void)t.render(messages, true, extra);
  } catch (const dsv3::Error&) {
  }
  return 0;
}
