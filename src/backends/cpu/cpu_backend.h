// The CPU backend: multi-threaded kernels over weights as stored. Ops it does not override run
// the scalar reference.
#pragma once

#include "base/thread_pool.h"
#include "ops/reference/reference.h"

namespace dsv3 {

class CpuBackend : public ReferenceBackend {
 public:
  explicit CpuBackend(ThreadPool& pool) : pool_(pool) {}

  void linear(const Weight& w, const float* x, int64_t n, float* y) override;

 private:
  ThreadPool& pool_;
};

}  // namespace dsv3
