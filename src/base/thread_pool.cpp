#include "base/thread_pool.h"

#include <algorithm>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define DSV3_PAUSE() _mm_pause()
#else
#define DSV3_PAUSE() std::this_thread::yield()
#endif

namespace dsv3 {

namespace {
// About 50-100 us of spinning (a pause is ~10-140 cycles depending on the core): long enough to
// cover the gap between two regions of a decode step, short enough not to burn a core when idle.
constexpr int kSpinIterations = 20000;
constexpr uint64_t kOpen = uint64_t(1) << 31;
constexpr uint64_t kRun = uint64_t(1) << 30;  // a run() job: every worker takes part
constexpr uint64_t kInsideMask = kRun - 1;
}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads < 1 ? 1 : n_threads) {
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
  }
  start_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::worker(int index) {
  uint64_t seen = 0;
  for (;;) {
    uint64_t gen = generation_.load(std::memory_order_acquire);
    for (int spin = 0; gen == seen && spin < kSpinIterations && !stop_.load(std::memory_order_relaxed); ++spin) {
      DSV3_PAUSE();
      gen = generation_.load(std::memory_order_acquire);
    }
    if (gen == seen) {
      std::unique_lock<std::mutex> lock(mu_);
      sleeping_.fetch_add(1);
      start_cv_.wait(lock, [&] { return stop_.load() || generation_.load() != seen; });
      sleeping_.fetch_sub(1);
      gen = generation_.load();
    }
    if (stop_.load()) return;
    // admit_ names the job of generation_ (it is stored first). A worker that slept through
    // for_chunks calls (which do not wait for it) may see a newer one: take the newest.
    uint64_t a = admit_.load(std::memory_order_acquire);
    while ((a >> 32) != (gen & 0xffffffffu)) {
      DSV3_PAUSE();
      gen = generation_.load(std::memory_order_acquire);
      a = admit_.load(std::memory_order_acquire);
    }
    seen = gen;
    if (!(a & kRun)) {
      // for_chunks: join only while the call is open; otherwise it is done without us.
      bool joined = false;
      while ((a >> 32) == (gen & 0xffffffffu) && (a & kOpen) &&
             !(joined = admit_.compare_exchange_weak(a, a + 1, std::memory_order_acq_rel))) {
      }
      if (joined) {
        take_chunks(index);
        admit_.fetch_sub(1, std::memory_order_acq_rel);
      }
      continue;
    }
    (*job_)(index);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::take_chunks(int index) {
  for (int64_t c; (c = next_chunk_.fetch_add(1, std::memory_order_relaxed)) < n_chunks_;) (*chunk_job_)(c, index);
}

void ThreadPool::for_chunks(int64_t n_chunks, FunctionRef<void(int64_t, int)> fn) {
  if (n_chunks <= 0) return;
  if (n_threads_ == 1 || n_chunks == 1) {
    for (int64_t c = 0; c < n_chunks; ++c) fn(c, 0);
    return;
  }
  chunk_job_ = &fn;
  n_chunks_ = n_chunks;
  next_chunk_.store(0, std::memory_order_relaxed);
  const uint64_t gen = generation_.load() + 1;
  admit_.store(((gen & 0xffffffffu) << 32) | kOpen, std::memory_order_release);
  generation_.fetch_add(1);  // seq_cst: ordered before the sleeping_ load below
  if (sleeping_.load() > 0) {
    std::lock_guard<std::mutex> lock(mu_);
    start_cv_.notify_all();
  }
  take_chunks(0);
  // Close admission, then wait only for the workers that joined (they finish their chunk).
  admit_.fetch_and(~kOpen, std::memory_order_acq_rel);
  for (int spin = 0; (admit_.load(std::memory_order_acquire) & kInsideMask) != 0; ++spin) {
    if (spin < kSpinIterations)
      DSV3_PAUSE();
    else
      std::this_thread::yield();
  }
}

void ThreadPool::run(FunctionRef<void(int)> fn) {
  if (n_threads_ == 1) {
    fn(0);
    return;
  }
  job_ = &fn;
  pending_.store(n_threads_ - 1, std::memory_order_relaxed);
  admit_.store(((generation_.load() + 1) & 0xffffffffu) << 32 | kRun, std::memory_order_release);
  generation_.fetch_add(1);  // seq_cst: ordered before the sleeping_ load below
  if (sleeping_.load() > 0) {
    // Taking the lock orders this notify after a worker's predicate check (no lost wake-up).
    std::lock_guard<std::mutex> lock(mu_);
    start_cv_.notify_all();
  }
  fn(0);
  for (int spin = 0; pending_.load(std::memory_order_acquire) != 0; ++spin) {
    if (spin < kSpinIterations)
      DSV3_PAUSE();
    else
      std::this_thread::yield();  // a worker was descheduled (cores shared with other work)
  }
}

void ThreadPool::parallel_for(int64_t n, FunctionRef<void(int64_t, int64_t)> fn) {
  if (n <= 0) return;
  const int64_t parts = std::min<int64_t>(n, n_threads_);
  // Ranges are handed out as chunks: a thread that is late (descheduled) leaves its range to one
  // that is running instead of holding up the call.
  for_chunks(parts, [&](int64_t c, int) { fn(n * c / parts, n * (c + 1) / parts); });
}

}  // namespace dsv3
