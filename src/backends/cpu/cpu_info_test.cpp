#include "backends/cpu/cpu_info.h"

#include <gtest/gtest.h>

namespace dsv3::cpu {
namespace {

// Two processor blocks of an Intel /proc/cpuinfo: the first one's fields, the "model name" key not
// taken for "model".
TEST(CpuInfo, ParsesTheFirstProcessorBlock) {
  const CpuInfo c = parse_proc_cpuinfo(
      "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 143\n"
      "model name\t: Intel(R) Xeon(R) Platinum 8488C\nstepping\t: 8\n\n"
      "processor\t: 1\ncpu family\t: 7\nmodel\t\t: 1\nmodel name\t: Other\n");
  EXPECT_EQ(c.model_name, "Intel(R) Xeon(R) Platinum 8488C");
  EXPECT_EQ(c.family, 6);
  EXPECT_EQ(c.model, 143);
  EXPECT_EQ(c.description(), "Intel(R) Xeon(R) Platinum 8488C (family 6, model 143)");
  EXPECT_EQ(parse_proc_cpuinfo("").description(), "unknown CPU");
}

TEST(CpuInfo, ParsesSysfsCacheSizes) {
  EXPECT_EQ(parse_cache_size("48K\n"), 48 << 10);
  EXPECT_EQ(parse_cache_size("32M"), int64_t(32) << 20);
  EXPECT_EQ(parse_cache_size("1024"), 1024);
  EXPECT_EQ(parse_cache_size("K"), 0);
  EXPECT_EQ(parse_cache_size("12Q"), 0);
}

// This machine: whatever it is, the sizes are sane when known (an L3 below L2 would be a misread).
TEST(CpuInfo, ReadsThisMachine) {
  const CpuInfo c = read_cpu_info();
  if (c.l2_bytes > 0 && c.l3_bytes > 0) {
    EXPECT_GE(c.l3_bytes, c.l2_bytes);
  }
  EXPECT_FALSE(c.description().empty());
}

}  // namespace
}  // namespace dsv3::cpu
