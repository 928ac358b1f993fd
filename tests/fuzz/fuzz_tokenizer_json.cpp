// libFuzzer target: tokenizer.json bytes into a Tokenizer, which then encodes and decodes a
// fixed text. Any outcome but that or dsv3::Error is a finding.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "base/error.h"
#include "io/json_file.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto j = dsv3::parse_json(std::string_view(reinterpret_cast<const char*>(data), size), "tokenizer.json");
    const dsv3::Tokenizer t = dsv3::Tokenizer::from_json(j, dsv3::TokenizerConfig{}, "tokenizer.json");
    const auto ids = t.encode("Hello, wörld! 123 <|x|>  \n\t", true);
    (void)t.decode(ids, false);
    (void)t.decode(ids, true);
  } catch (const dsv3::Error&) {
  }
  return 0;
}
