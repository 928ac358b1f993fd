#include "base/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <vector>

namespace dsv3 {
namespace {

TEST(ThreadPool, ParallelForCoversEveryIndexOnce) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (int n : {0, 1, 2, 7, 100}) {
      std::vector<std::atomic<int>> hits(n);
      for (int rep = 0; rep < 3; ++rep)
        pool.parallel_for(n, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) hits[i]++;
        });
      for (int i = 0; i < n; ++i) EXPECT_EQ(hits[i].load(), 3) << threads << " " << n << " " << i;
    }
  }
}

TEST(ThreadPool, RunCallsEachThreadIndex) {
  ThreadPool pool(4);
  std::vector<std::atomic<int>> seen(4);
  for (int rep = 0; rep < 100; ++rep) pool.run([&](int t) { seen[t]++; });
  for (auto& s : seen) EXPECT_EQ(s.load(), 100);
}

}  // namespace
}  // namespace dsv3
