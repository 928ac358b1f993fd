#include "tokenizer/stream_decoder.h"

#include "tokenizer/utf8.h"

namespace dsv3 {

std::string StreamDecoder::push(int32_t id) {
  pending_.append(tokenizer_.token_bytes(id, skip_special_));
  // Cutting before an unfinished sequence keeps lossy decoding of the parts equal to lossy
  // decoding of the whole: no maximal ill-formed subpart can span the cut.
  size_t n = complete_utf8_prefix(pending_);
  std::string out = utf8_lossy(std::string_view(pending_).substr(0, n));
  pending_.erase(0, n);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out = utf8_lossy(pending_);
  pending_.clear();
  return out;
}

}  // namespace dsv3
