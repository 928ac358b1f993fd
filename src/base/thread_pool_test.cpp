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

TEST(ThreadPool, ForChunksRunsEveryChunkOnceInterleavedWithRun) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 2, 5, 64}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      std::vector<std::atomic<int>> seen(static_cast<size_t>(threads));
      for (int rep = 0; rep < 200; ++rep) {
        pool.for_chunks(n, [&](int64_t c, int t) {
          ASSERT_LT(t, threads);
          hits[size_t(c)]++;
        });
        pool.run([&](int t) { seen[size_t(t)]++; });  // every index still runs exactly once
      }
      for (int64_t c = 0; c < n; ++c) EXPECT_EQ(hits[size_t(c)].load(), 200) << threads << " " << n;
      for (auto& s : seen) EXPECT_EQ(s.load(), 200);
    }
  }
}

}  // namespace
}  // namespace dsv3
