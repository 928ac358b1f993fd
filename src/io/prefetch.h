// Faults a checkpoint's mapped shards into memory before the first forward step, so that a
// long load (hundreds of GB from disk) happens once, up front, with progress, instead of
// stalling the first tokens. madvise(WILLNEED) starts readahead; touching one byte per page
// makes sure the pages are resident.
#pragma once

#include <cstdint>
#include <functional>
#include <span>

#include "base/thread_pool.h"
#include "io/checkpoint.h"

namespace dsv3 {

// progress(bytes_done, bytes_total, tensors_done, tensors_total) after each tensor.
void prefetch_checkpoint(const Checkpoint& ckpt, ThreadPool* pool,
                         const std::function<void(uint64_t, uint64_t, int64_t, int64_t)>& progress);

// The same for `tensors` only (LoadedCheckpoint::bound_tensors: what the model reads), so that
// tensors nothing reads (an MTP layer not asked for) are neither read from disk nor resident.
void prefetch_tensors(std::span<const TensorInfo* const> tensors, ThreadPool* pool,
                      const std::function<void(uint64_t, uint64_t, int64_t, int64_t)>& progress);

}  // namespace dsv3
