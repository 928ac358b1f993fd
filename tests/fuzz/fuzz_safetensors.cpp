// libFuzzer target: a safetensors file (8-byte header length, JSON header, data) as bytes.
// Any outcome but a loaded file or dsv3::Error is a finding.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "base/error.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // SafetensorsFile maps a path: an in-memory file keeps the disk out of the loop.
  static const int fd = memfd_create("fuzz.safetensors", 0);
  static const std::string path = "/proc/self/fd/" + std::to_string(fd);
  if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != ssize_t(size)) return 0;
  try {
    dsv3::SafetensorsFile f(path);
    uint64_t total = 0;
    for (const auto& t : f.tensors()) {
      // Every tensor the header admits must lie inside the mapping.
      if (t.nbytes) total += t.data[0] + t.data[t.nbytes - 1];
      (void)t.numel();
    }
    (void)total;
  } catch (const dsv3::Error&) {
  }
  return 0;
}
