// One reply's text as it is generated: token ids -> streaming detokenizer -> stop strings.
// push() returns what can be shown now; finish() the rest.
#pragma once

#include <string>
#include <vector>

#include "runtime/stop_strings.h"
#include "tokenizer/stream_decoder.h"

namespace dsv3::cli {

class ReplyStream {
 public:
  ReplyStream(const Tokenizer& tok, std::vector<std::string> stops) : decoder_(tok, /*skip_special=*/true), stops_(std::move(stops)) {}

  std::string push(int32_t id) { return stops_.push(decoder_.push(id)); }
  std::string finish() {
    std::string out = stops_.push(decoder_.flush());
    return out + stops_.flush();
  }
  bool stopped() const { return stops_.stopped(); }
  const std::string& text() const { return stops_.text(); }

 private:
  StreamDecoder decoder_;
  StopStrings stops_;
};

}  // namespace dsv3::cli
