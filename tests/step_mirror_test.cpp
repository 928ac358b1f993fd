// Serving across ranks (runtime/step_mirror.h) in one process: 2 ranks as threads
// (tests/thread_comm.h), each with its part of the weights; rank 0 runs the Scheduler and sends
// each step, rank 1 follows. Requests arrive together into a small pool (chunked prompts, a shared
// prefix, n = 2 with copy on write, requests waiting for blocks): rank 0's greedy tokens equal one process's, and
// at the end both ranks' KV cache pools hold the same bytes (every row written and every block
// copied alike). mpi_serve_test.cpp runs `dsv3 serve` itself under mpirun.
#include "runtime/step_mirror.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>

#include "backends/cpu/cpu_backend.h"
#include "runtime/scheduler.h"
#include "tests/thread_comm.h"
#include "weights/loaded_checkpoint.h"
#include "weights/shard.h"

namespace dsv3 {
namespace {

using namespace std::chrono_literals;

const char* const kDir = "tests/data/golden/v3-tiny-fp8";
constexpr int64_t kBlockSize = 4, kBlocks = 40;

std::vector<ScheduledRequest> requests() {
  std::vector<ScheduledRequest> out;
  for (int i = 0; i < 6; ++i) {
    ScheduledRequest r;
    r.prompt = {0};
    // Requests 0 and 1 share their first 17 tokens (prefix cache blocks).
    for (int k = 1; k < 9 + 7 * i; ++k) r.prompt.push_back(int32_t(((k < 17 && i < 2 ? 0 : i) * 101 + k * 37) % 900 + 2));
    r.n = i == 2 ? 2 : 1;
    r.sampling.temperature = 0;
    r.max_new_tokens = 10 + i;
    out.push_back(std::move(r));
  }
  return out;
}

// Submits every request at once and waits for all: tokens[request][choice].
std::vector<std::vector<std::vector<int32_t>>> run_all(Scheduler& s) {
  auto reqs = requests();
  std::mutex mu;
  std::condition_variable cv;
  int64_t open = 0;
  std::vector<std::vector<std::vector<int32_t>>> tokens(reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    tokens[i].resize(size_t(reqs[i].n));
    open += reqs[i].n;
    RequestCallbacks cb;
    cb.on_token = [&, i](int c, const SampledToken& t) {
      std::lock_guard lock(mu);
      tokens[i][size_t(c)].push_back(t.id);
      return true;
    };
    cb.on_finish = [&](int, FinishReason) {
      std::lock_guard lock(mu);
      --open;
      cv.notify_all();
    };
    EXPECT_TRUE(s.submit(reqs[i], cb));
  }
  std::unique_lock lock(mu);
  EXPECT_TRUE(cv.wait_for(lock, 120s, [&] { return open == 0; })) << "requests did not finish";
  return tokens;
}

SchedulerOptions options(std::shared_ptr<BlockPool> pool) {
  return {.max_running = 8, .max_step_tokens = 8, .pool = std::move(pool)};
}

struct RankOut {
  std::vector<std::vector<std::vector<int32_t>>> tokens;  // rank 0 only
  std::shared_ptr<BlockPool> pool;
};

RankOut run_rank(test::ThreadGroup& g, int rank, bool send_copies) {
  RankOut out;
  test::ThreadComm comm(g, rank);
  auto lc = LoadedCheckpoint::load(kDir);
  shard_weights(lc->weights, lc->config, ShardPlan::make(lc->config, rank, g.size));
  ThreadPool threads(1);
  CpuBackend backend(threads);
  Model model(lc->config, lc->weights, backend, comm);
  out.pool = std::make_shared<BlockPool>(model.cache_layout(kBlockSize), kBlocks);
  if (rank != 0) {
    follow_steps(model, out.pool, /*absorbed=*/true);
    return out;
  }
  StepSender sender(comm, *out.pool);
  if (!send_copies) out.pool->set_copy_hook({});  // the fault the pool comparison must catch
  {
    SchedulerOptions o = options(out.pool);
    o.before_forward = [&](std::span<const StepEntry> e, std::span<SequenceCache* const> c,
                           std::span<const int32_t> rows) { sender.send(e, c, rows); };
    Scheduler s(model, o);
    out.tokens = run_all(s);
  }
  sender.stop();
  return out;
}

std::vector<RankOut> run_two_ranks(bool send_copies) {
  test::ThreadGroup g(2);
  std::vector<RankOut> out(2);
  std::thread t1([&] { out[1] = run_rank(g, 1, send_copies); });
  out[0] = run_rank(g, 0, send_copies);
  t1.join();
  return out;
}

bool same_pool_bytes(const BlockPool& a, const BlockPool& b) {
  const CacheLayout& l = a.layout();
  const size_t bytes = size_t(a.n_blocks() * l.block_size * l.row_bytes());
  for (int64_t il = 0; il < l.n_layers; ++il)
    if (std::memcmp(a.layer_data(il), b.layer_data(il), bytes) != 0) return false;
  return true;
}

std::vector<std::vector<std::vector<int32_t>>> one_process_tokens() {
  auto lc = LoadedCheckpoint::load(kDir);
  ThreadPool threads(1);
  CpuBackend backend(threads);
  Model model(lc->config, lc->weights, backend);
  Scheduler s(model, options(std::make_shared<BlockPool>(model.cache_layout(kBlockSize), kBlocks)));
  return run_all(s);
}

TEST(StepMirror, TheFollowingRankRunsRankZerosStepsOverTheSameBlocks) {
  const auto want = one_process_tokens();
  const auto ranks = run_two_ranks(/*send_copies=*/true);
  EXPECT_EQ(ranks[0].tokens, want);
  EXPECT_TRUE(same_pool_bytes(*ranks[0].pool, *ranks[1].pool));
}

// Without the copy-on-write copies (n = 2's shared last prompt block) the following rank's
// attention reads rows it never got: the replies change.
TEST(StepMirror, CopiesLeftOutChangeTheReplies) {
  const auto want = one_process_tokens();
  const auto ranks = run_two_ranks(/*send_copies=*/false);
  EXPECT_NE(ranks[0].tokens, want);
}

}  // namespace
}  // namespace dsv3
