#include "io/safetensors_writer.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>

#include "base/error.h"

namespace dsv3 {

uint64_t write_safetensors(const std::string& path, std::vector<TensorToWrite> tensors,
                           const std::map<std::string, std::string>& metadata) {
  std::sort(tensors.begin(), tensors.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  // Built by hand rather than with nlohmann (which sorts keys anyway) to control the exact bytes.
  std::string header = "{";
  uint64_t offset = 0;
  bool first = true;
  for (const auto& t : tensors) {
    int64_t numel = 1;
    for (auto d : t.shape) numel *= d;
    DSV3_CHECK(uint64_t(numel) * uint64_t(dtype_size(t.dtype)) == t.bytes.size(), "tensor byte size mismatch");
    // Key order as the Python safetensors package writes it (dtype, shape, data_offsets).
    nlohmann::ordered_json e = {{"dtype", std::string(dtype_name(t.dtype))},
                        {"shape", t.shape},
                        {"data_offsets", {offset, offset + t.bytes.size()}}};
    header += (first ? "" : ",") + nlohmann::json(t.name).dump() + ":" + e.dump();
    first = false;
    offset += t.bytes.size();
  }
  if (!metadata.empty()) header += std::string(first ? "" : ",") + "\"__metadata__\":" + nlohmann::json(metadata).dump();
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');

  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) fail("cannot create '{}': {}", path, std::strerror(errno));
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = uint8_t(uint64_t(header.size()) >> (8 * i));
  out.write(reinterpret_cast<const char*>(len), 8);
  out.write(header.data(), std::streamsize(header.size()));
  for (const auto& t : tensors) out.write(reinterpret_cast<const char*>(t.bytes.data()), std::streamsize(t.bytes.size()));
  out.close();
  if (!out) fail("cannot write '{}' (disk full?)", path);
  return offset;
}

}  // namespace dsv3
