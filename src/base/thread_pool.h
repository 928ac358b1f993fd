// A small fixed pool of worker threads for data-parallel loops. Passed in, never global.
// The calling thread takes part as worker 0, so ThreadPool(1) runs everything inline.
//
// Workers spin (with a pause hint) for a short while after each job before they block, so a
// decode step's many short parallel regions cost about a microsecond each instead of a
// condition-variable wake-up (tens of microseconds). Jobs are passed by reference (FunctionRef):
// starting a region never allocates.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace dsv3 {

// A non-owning reference to a callable (the callable must outlive the call it is passed to).
template <typename Sig>
class FunctionRef;

template <typename R, typename... Args>
class FunctionRef<R(Args...)> {
 public:
  template <typename F, typename = std::enable_if_t<!std::is_same_v<std::decay_t<F>, FunctionRef>>>
  FunctionRef(F&& f)  // NOLINT: implicit, so lambdas pass straight in
      : obj_(const_cast<void*>(static_cast<const void*>(&f))),
        call_([](void* o, Args... a) -> R { return (*static_cast<std::remove_reference_t<F>*>(o))(std::forward<Args>(a)...); }) {}
  R operator()(Args... a) const { return call_(obj_, std::forward<Args>(a)...); }

 private:
  void* obj_;
  R (*call_)(void*, Args...);
};

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Calls fn(thread_index) once on each of the size() threads and waits for all.
  void run(FunctionRef<void(int)> fn);

  // Splits [0, n) into size() contiguous ranges and calls fn(begin, end) once for each non-empty
  // one, on whichever threads are free (see for_chunks).
  void parallel_for(int64_t n, FunctionRef<void(int64_t, int64_t)> fn);

  // Calls fn(chunk, thread_index) for every chunk in [0, n_chunks), handing chunks out one at a
  // time to whichever thread is free. A worker that wakes only after every chunk is taken (it was
  // descheduled: the cores are shared) neither runs nor delays the call, so threads never wait
  // on each other except for a chunk already in progress.
  void for_chunks(int64_t n_chunks, FunctionRef<void(int64_t, int)> fn);

 private:
  void worker(int index);
  void take_chunks(int index);

  int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable start_cv_;
  const FunctionRef<void(int)>* job_ = nullptr;                 // run()
  const FunctionRef<void(int64_t, int)>* chunk_job_ = nullptr;  // for_chunks()
  int64_t n_chunks_ = 0;
  std::atomic<int64_t> next_chunk_{0};
  // The current job: generation (high 32 bits) | kRun or kOpen | workers inside a for_chunks call.
  std::atomic<uint64_t> admit_{0};
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<int> sleeping_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace dsv3
