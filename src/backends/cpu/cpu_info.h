// What a benchmark figure needs to say about the machine it came from: the CPU model and its
// L2/L3 sizes (the bandwidth probe must read well past L3 to measure memory, not cache).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace dsv3::cpu {

struct CpuInfo {
  std::string model_name;  // /proc/cpuinfo "model name", e.g. "Intel(R) Xeon(R) Platinum 8488C"; "" unknown
  int family = -1, model = -1;  // /proc/cpuinfo "cpu family" and "model" (tells Zen 4 from Zen 5 under a VM's name)
  int64_t l2_bytes = 0;  // one core's L2, as the CPU reports it; 0 unknown
  int64_t l3_bytes = 0;  // the L3 one core sees (a VM may report the whole socket's); 0 unknown

  // "AMD EPYC (family 26, model 2)", or "unknown CPU".
  std::string description() const;
};

// This machine: /proc/cpuinfo for the names, sysconf (glibc reads CPUID) for the cache sizes,
// else /sys/devices/system/cpu/cpu0/cache. Never throws: what cannot be read stays unknown.
CpuInfo read_cpu_info();

// The first processor block of /proc/cpuinfo text: model name, cpu family, model.
CpuInfo parse_proc_cpuinfo(std::string_view text);

// A sysfs cache size ("48K", "2048K", "32M", "1024"): bytes, or 0 when not understood.
int64_t parse_cache_size(std::string_view text);

}  // namespace dsv3::cpu
