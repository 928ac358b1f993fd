// libFuzzer target over the HTTP request-body parsers (untrusted bytes from the network):
//   cmake -S . -B build-fuzz -DCMAKE_CXX_COMPILER=clang++ -DDSV3_FUZZ=ON && cmake --build build-fuzz --target fuzz_request
//   build-fuzz/tests/fuzz/fuzz_request -max_total_time=60
// Any outcome but a parsed request or serve::ApiError is a bug (the fuzzer reports the abort).
#include <cstddef>
#include <cstdint>
#include <string>

#include "serve/api_error.h"
#include "serve/request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dsv3::serve;
  const std::string body(reinterpret_cast<const char*>(data), size);
  try {
    const Json j = parse_body(body);
    std::vector<std::string> unknown;
    if (j.contains("prompt"))
      parse_completion_request(j, {}, &unknown);
    else
      parse_chat_request(j, {}, &unknown);
  } catch (const ApiError&) {
  }
  return 0;
}
