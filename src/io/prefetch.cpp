#include "io/prefetch.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>

namespace dsv3 {

void prefetch_checkpoint(const Checkpoint& ckpt, ThreadPool* pool,
                         const std::function<void(uint64_t, uint64_t, int64_t, int64_t)>& progress) {
  prefetch_tensors(ckpt.tensors(), pool, progress);
}

void prefetch_tensors(std::span<const TensorInfo* const> tensors, ThreadPool* pool,
                      const std::function<void(uint64_t, uint64_t, int64_t, int64_t)>& progress) {
  uint64_t total = 0, done = 0;
  for (const TensorInfo* t : tensors) total += t->nbytes;
  const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  std::atomic<uint64_t> sink{0};  // keeps the reads from being optimised away
  int64_t n = 0;
  for (const TensorInfo* t : tensors) {
    if (t->nbytes > 0) {
      const uintptr_t begin = uintptr_t(t->data) & ~(page - 1), end = uintptr_t(t->data) + t->nbytes;
      madvise(reinterpret_cast<void*>(begin), end - begin, MADV_WILLNEED);  // advisory: failure is harmless
      const int64_t n_pages = int64_t((end - begin + page - 1) / page);
      auto touch = [&](int64_t p0, int64_t p1) {
        uint64_t s = 0;
        for (int64_t p = p0; p < p1; ++p) {
          const uintptr_t a = std::max(begin + uintptr_t(p) * page, uintptr_t(t->data));
          s += *reinterpret_cast<const volatile uint8_t*>(a);
        }
        sink += s;
      };
      if (pool && n_pages > 64)
        pool->parallel_for(n_pages, touch);
      else
        touch(0, n_pages);
    }
    done += t->nbytes;
    ++n;
    if (progress) progress(done, total, n, int64_t(tensors.size()));
  }
}

}  // namespace dsv3
