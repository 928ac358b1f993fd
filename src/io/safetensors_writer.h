// Writes safetensors files (tensors sorted by name, header padded to 8 bytes with spaces,
// as the Python `safetensors` package and DeepSeek's tools write them).
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "base/dtype.h"

namespace dsv3 {

struct TensorToWrite {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::span<const uint8_t> bytes;  // must stay alive until write_safetensors returns
};

// `metadata` empty writes no "__metadata__" key. Returns the bytes of tensor data written.
uint64_t write_safetensors(const std::string& path, std::vector<TensorToWrite> tensors,
                           const std::map<std::string, std::string>& metadata = {});

}  // namespace dsv3
