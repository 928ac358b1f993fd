#include "backends/cpu/cpu_info.h"

#include <unistd.h>

#include <charconv>
#include <fstream>
#include <sstream>

namespace dsv3::cpu {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) s.remove_suffix(1);
  return s;
}

int to_int(std::string_view s) {
  int v = -1;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// sysfs index*/ of cpu0: the unified or data cache of `level`.
int64_t sysfs_cache_bytes(int level) {
  for (int i = 0; i < 8; ++i) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
    const std::string lv = std::string(trim(slurp(dir + "level")));
    if (lv.empty()) break;
    const std::string type = std::string(trim(slurp(dir + "type")));
    if (to_int(lv) == level && type != "Instruction") return parse_cache_size(trim(slurp(dir + "size")));
  }
  return 0;
}

// The kernel's figure first: glibc's sysconf derives the L3 from CPUID, which on AMD guests can
// describe the host's caches (384 MiB on a 2-core EPYC VM whose sysfs says 32 MiB).
int64_t cache_bytes(int level) {
  if (const int64_t v = sysfs_cache_bytes(level); v > 0) return v;
  long v = 0;
#if defined(_SC_LEVEL2_CACHE_SIZE) && defined(_SC_LEVEL3_CACHE_SIZE)
  v = sysconf(level == 2 ? _SC_LEVEL2_CACHE_SIZE : _SC_LEVEL3_CACHE_SIZE);
#endif
  return v > 0 ? int64_t(v) : 0;
}

}  // namespace

std::string CpuInfo::description() const {
  std::string s = model_name.empty() ? "unknown CPU" : model_name;
  if (family >= 0 && model >= 0) s += " (family " + std::to_string(family) + ", model " + std::to_string(model) + ")";
  return s;
}

CpuInfo parse_proc_cpuinfo(std::string_view text) {
  CpuInfo info;
  while (!text.empty()) {
    const size_t eol = text.find('\n');
    const std::string_view line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view{} : text.substr(eol + 1);
    if (trim(line).empty()) {
      if (!info.model_name.empty() || info.family >= 0) break;  // end of the first processor block
      continue;
    }
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    const std::string_view key = trim(line.substr(0, colon)), value = trim(line.substr(colon + 1));
    if (key == "model name") info.model_name = std::string(value);
    else if (key == "cpu family") info.family = to_int(value);
    else if (key == "model") info.model = to_int(value);
  }
  return info;
}

int64_t parse_cache_size(std::string_view text) {
  text = trim(text);
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || v <= 0) return 0;
  const std::string_view unit = text.substr(size_t(end - text.data()));
  if (unit.empty()) return v;
  if (unit == "K") return v << 10;
  if (unit == "M") return v << 20;
  if (unit == "G") return v << 30;
  return 0;
}

CpuInfo read_cpu_info() {
  CpuInfo info = parse_proc_cpuinfo(slurp("/proc/cpuinfo"));
  info.l2_bytes = cache_bytes(2);
  info.l3_bytes = cache_bytes(3);
  return info;
}

}  // namespace dsv3::cpu
