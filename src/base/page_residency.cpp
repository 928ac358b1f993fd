#include "base/page_residency.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

namespace dsv3 {

std::optional<uint64_t> resident_bytes(const void* p, size_t n) {
  if (n == 0) return 0;
  const uint64_t page = uint64_t(sysconf(_SC_PAGESIZE));
  const uint64_t first = uint64_t(reinterpret_cast<uintptr_t>(p)) / page;
  const uint64_t last = (uint64_t(reinterpret_cast<uintptr_t>(p)) + n - 1) / page;
  const int fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  // One 64-bit entry per virtual page; bit 63: present in RAM (Documentation/admin-guide/mm/pagemap.rst).
  std::vector<uint64_t> entries(4096);
  uint64_t present = 0;
  bool ok = true;
  for (uint64_t at = first; at <= last && ok;) {
    const uint64_t count = std::min<uint64_t>(entries.size(), last - at + 1);
    const ssize_t got = ::pread(fd, entries.data(), count * 8, off_t(at * 8));
    if (got <= 0 || got % 8 != 0) {
      ok = false;
      break;
    }
    for (ssize_t i = 0; i < got / 8; ++i) present += entries[size_t(i)] >> 63;
    at += uint64_t(got / 8);
  }
  ::close(fd);
  if (!ok) return std::nullopt;
  return present * page;
}

}  // namespace dsv3
