// The machine's memory read bandwidth, measured the way a decode step reads weights: every
// thread of the pool streams its slice of a buffer far larger than the caches with SIMD loads.
#pragma once

#include <cstdint>

#include "base/thread_pool.h"

namespace dsv3::cpu {

struct BandwidthProbe {
  double gb_s = 0;     // best pass, 1e9 bytes per second
  int64_t bytes = 0;   // buffer size
  int passes = 0;
};

// Allocates and fills `bytes` (rounded down to floats), then sums it `passes` times with all
// pool threads; reports the fastest pass. The buffer is freed before returning.
BandwidthProbe measure_read_bandwidth(ThreadPool& pool, int64_t bytes = int64_t(2) << 30, int passes = 5);

}  // namespace dsv3::cpu
