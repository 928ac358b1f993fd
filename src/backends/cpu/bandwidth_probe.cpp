#include "backends/cpu/bandwidth_probe.h"

#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "backends/cpu/kernels.h"
#include "base/error.h"

namespace dsv3::cpu {

BandwidthProbe measure_read_bandwidth(ThreadPool& pool, int64_t bytes, int passes) {
  const int64_t n = bytes / int64_t(sizeof(float));
  const size_t size = size_t(n) * sizeof(float);
  // mmap rather than new[]: the pages go back to the system on return, so the probe does not
  // linger in the process's resident memory.
  void* mem = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) fail("bandwidth probe: cannot map {} bytes", size);
  float* p = static_cast<float*>(mem);
  const int T = pool.size();
  // First touch by the thread that later reads the slice.
  pool.run([&](int t) {
    const int64_t b = n * t / T, e = n * (t + 1) / T;
    for (int64_t i = b; i < e; ++i) p[i] = float(i & 1023) * 1e-3f;
  });
  BandwidthProbe r{.bytes = int64_t(size), .passes = passes};
  volatile float sink = 0;
  for (int pass = 0; pass < passes; ++pass) {
    float sums[256] = {};
    const auto t0 = std::chrono::steady_clock::now();
    pool.run([&](int t) {
      const int64_t b = n * t / T, e = n * (t + 1) / T;
      sums[t % 256] = sum_f32(p + b, e - b);
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (int t = 0; t < T; ++t) sink = sink + sums[t % 256];
    r.gb_s = std::max(r.gb_s, double(size) / s / 1e9);
  }
  munmap(mem, size);
  return r;
}

}  // namespace dsv3::cpu
