#include "backends/cpu/bandwidth_probe.h"

#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "backends/cpu/kernels.h"
#include "base/error.h"

namespace dsv3::cpu {

ReadBandwidthProbe::ReadBandwidthProbe(ThreadPool& pool, int64_t bytes) : pool_(pool) {
  const int64_t n = bytes / int64_t(sizeof(float));
  size_ = size_t(n) * sizeof(float);
  // mmap rather than new[]: the pages go back to the system on destruction, so the probe does
  // not linger in the process's resident memory.
  void* mem = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) fail("bandwidth probe: cannot map {} bytes", size_);
  data_ = static_cast<float*>(mem);
  const int T = pool_.size();
  pool_.run([&](int t) {
    const int64_t b = n * t / T, e = n * (t + 1) / T;
    for (int64_t i = b; i < e; ++i) data_[i] = float(i & 1023) * 1e-3f;
  });
}

ReadBandwidthProbe::~ReadBandwidthProbe() { munmap(data_, size_); }

double ReadBandwidthProbe::measure(int passes) {
  const int64_t n = int64_t(size_ / sizeof(float));
  const int T = pool_.size();
  double best = 0;
  volatile float sink = 0;
  for (int pass = 0; pass < passes; ++pass) {
    float sums[256] = {};
    const auto t0 = std::chrono::steady_clock::now();
    pool_.run([&](int t) {
      const int64_t b = n * t / T, e = n * (t + 1) / T;
      sums[t % 256] = sum_f32(data_ + b, e - b);
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (int t = 0; t < T; ++t) sink = sink + sums[t % 256];
    best = std::max(best, double(size_) / s / 1e9);
  }
  return best;
}

}  // namespace dsv3::cpu
