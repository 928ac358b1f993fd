#include "base/page_residency.h"

#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

namespace dsv3 {
namespace {

// An anonymous mapping has no page until written: the count follows exactly what we touch.
TEST(PageResidency, CountsOnlyThePagesTouched) {
  const size_t page = size_t(sysconf(_SC_PAGESIZE)), n = 64 * page;
  void* m = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(m, MAP_FAILED);
  char* bytes = static_cast<char*>(m);
  const auto before = resident_bytes(m, n);
  if (!before) GTEST_SKIP() << "/proc/self/pagemap is not readable here";
  EXPECT_EQ(*before, 0u);
  for (size_t i = 0; i < 10; ++i) static_cast<volatile char*>(m)[i * 2 * page] = 1;  // pages 0, 2, ..., 18
  EXPECT_EQ(resident_bytes(m, n).value(), 10 * page);
  EXPECT_EQ(resident_bytes(bytes + 20 * page, 44 * page).value(), 0u);
  EXPECT_EQ(resident_bytes(bytes + 2 * page + 5, 1).value(), page);  // the page holding the byte
  munmap(m, n);
}

}  // namespace
}  // namespace dsv3
