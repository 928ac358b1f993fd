// The machine's memory read bandwidth, measured the way a decode step reads weights: every
// thread of the pool streams its slice of a buffer far larger than the caches with SIMD loads.
#pragma once

#include <cstdint>

#include "base/thread_pool.h"

namespace dsv3::cpu {

class ReadBandwidthProbe {
 public:
  // Maps and fills `bytes` (rounded down to floats), each thread first-touching the slice it
  // later reads. The pages go back to the system when the probe is destroyed.
  ReadBandwidthProbe(ThreadPool& pool, int64_t bytes);
  ~ReadBandwidthProbe();
  ReadBandwidthProbe(const ReadBandwidthProbe&) = delete;
  ReadBandwidthProbe& operator=(const ReadBandwidthProbe&) = delete;

  // Sums the buffer `passes` times with all pool threads; the fastest pass in 1e9 bytes/s.
  double measure(int passes);
  int64_t bytes() const { return int64_t(size_); }

 private:
  ThreadPool& pool_;
  float* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace dsv3::cpu
