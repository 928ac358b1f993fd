// libFuzzer target: tokenizer_config.json bytes, then its chat template parsed (not rendered:
// fuzz_template covers rendering). Any outcome but that or dsv3::Error is a finding.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "base/error.h"
#include "io/json_file.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto j =
        dsv3::parse_json(std::string_view(reinterpret_cast<const char*>(data), size), "tokenizer_config.json");
    const dsv3::TokenizerConfig c = dsv3::TokenizerConfig::from_json(j, "tokenizer_config.json");
    if (!c.chat_templates.empty()) (void)dsv3::ChatTemplate::from_config(c);
  } catch (const dsv3::Error&) {
  }
  return 0;
}
