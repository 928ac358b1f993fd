// Incremental detokenizer for chat and server streaming: push ids one at a time and get the
// text that is complete so far. Bytes of a character split across tokens are held back until
// the character is whole; the concatenation of all outputs equals Tokenizer::decode of all ids.
#pragma once

#include <cstdint>
#include <string>

#include "tokenizer/tokenizer.h"

namespace dsv3 {

class StreamDecoder {
 public:
  // `tokenizer` must outlive the decoder.
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special = true)
      : tokenizer_(tokenizer), skip_special_(skip_special) {}

  // Returns the newly completed text (possibly empty).
  std::string push(int32_t id);
  // Returns what is left (an unfinished character becomes U+FFFD) and resets.
  std::string flush();

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_;
  std::string pending_;  // bytes of an unfinished UTF-8 character
};

}  // namespace dsv3
