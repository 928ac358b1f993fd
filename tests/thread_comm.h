// A Comm between threads of one process (tests only): N threads act as N ranks, so the sharded
// model can be checked in-process (routing traces, batches, chunked prefill) without mpirun.
// Collectives meet at a std::barrier and read each other's buffers; sums in rank order, as
// MpiComm takes them.
#pragma once

#include <barrier>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "parallel/comm.h"

namespace dsv3::test {

struct ThreadGroup {
  explicit ThreadGroup(int n) : size(n), meet(n), slots(size_t(n)) {}
  int size;
  std::barrier<> meet;
  std::vector<const void*> slots;
};

class ThreadComm final : public Comm {
 public:
  ThreadComm(ThreadGroup& g, int rank) : g_(g), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return g_.size; }
  void all_gather(const void* in, int64_t bytes, void* out) override {
    g_.slots[size_t(rank_)] = in;
    g_.meet.arrive_and_wait();
    for (int r = 0; r < g_.size; ++r)
      if (static_cast<char*>(out) + r * bytes != g_.slots[size_t(r)])
        std::memcpy(static_cast<char*>(out) + r * bytes, g_.slots[size_t(r)], size_t(bytes));
    g_.meet.arrive_and_wait();  // nobody leaves while another still reads its buffer
  }
  void all_reduce_sum(float* data, int64_t count) override {
    tmp_.resize(size_t(count) * size_t(g_.size));
    all_gather(data, count * 4, tmp_.data());
    for (int64_t i = 0; i < count; ++i) data[i] = tmp_[size_t(i)];
    for (int r = 1; r < g_.size; ++r)
      for (int64_t i = 0; i < count; ++i) data[i] += tmp_[size_t(r) * size_t(count) + size_t(i)];
  }
  void broadcast(void* data, int64_t bytes, int root) override {
    g_.slots[size_t(rank_)] = data;
    g_.meet.arrive_and_wait();
    if (rank_ != root) std::memcpy(data, g_.slots[size_t(root)], size_t(bytes));
    g_.meet.arrive_and_wait();
  }
  void barrier() override { g_.meet.arrive_and_wait(); }
  [[noreturn]] void abort(const std::string&, int) override { std::abort(); }

 private:
  ThreadGroup& g_;
  int rank_;
  std::vector<float> tmp_;
};

}  // namespace dsv3::test
