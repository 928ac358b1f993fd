// The continuous-batching scheduler: a request's greedy tokens are the same alone and inside a
// batch of others arriving at other times (the CPU backend's per-row arithmetic does not depend
// on the batch), n choices share one prefill, cancellation and disconnects free the request at a
// step boundary, the queue is bounded, and the sampling extras (logit_bias, min_tokens, stop by
// callback, logprobs) do what they say.
#include "runtime/scheduler.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <future>
#include <thread>

#include "backends/cpu/cpu_backend.h"
#include "base/error.h"
#include "runtime/greedy.h"
#include "weights/loaded_checkpoint.h"

namespace dsv3 {
namespace {

using namespace std::chrono_literals;

// Collects one request's tokens and finish reasons; wait() blocks until every choice finished.
struct Collector {
  explicit Collector(int n = 1) : tokens(size_t(n)), finish(size_t(n)), logprobs(size_t(n)) {}
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::vector<int32_t>> tokens;
  std::vector<std::optional<FinishReason>> finish;
  std::vector<std::vector<SampledToken>> logprobs;
  std::function<bool(int, int32_t)> keep_going;
  std::atomic<bool> gone{false};

  RequestCallbacks callbacks() {
    RequestCallbacks cb;
    cb.on_token = [this](int c, const SampledToken& t) {
      std::lock_guard lock(mu);
      tokens[size_t(c)].push_back(t.id);
      logprobs[size_t(c)].push_back(t);
      return keep_going ? keep_going(c, t.id) : true;
    };
    cb.on_finish = [this](int c, FinishReason r) {
      std::lock_guard lock(mu);
      finish[size_t(c)] = r;
      cv.notify_all();
    };
    cb.disconnected = [this] { return gone.load(); };
    return cb;
  }
  void wait() {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, 60s, [&] {
      for (auto& f : finish)
        if (!f) return false;
      return true;
    })) << "request did not finish";
  }
};

class SchedulerTest : public ::testing::TestWithParam<int> {
 protected:
  static void SetUpTestSuite() { ckpt_ = LoadedCheckpoint::load("tests/data/golden/v3-tiny-fp8").release(); }
  static void TearDownTestSuite() {
    delete ckpt_;
    ckpt_ = nullptr;
  }
  SchedulerTest() : pool_(GetParam()), backend_(pool_), model_(ckpt_->config, ckpt_->weights, backend_) {}

  static std::vector<int32_t> prompt(int n, int salt) {
    std::vector<int32_t> p{0};
    for (int i = 1; i < n; ++i) p.push_back((i * 37 + salt * 101) % 1000 + 2);
    return p;
  }
  static ScheduledRequest greedy(std::vector<int32_t> p, int64_t max_new) {
    ScheduledRequest r;
    r.prompt = std::move(p);
    r.sampling.temperature = 0;
    r.max_new_tokens = max_new;
    return r;
  }

  static LoadedCheckpoint* ckpt_;
  ThreadPool pool_;
  CpuBackend backend_;
  Model model_;
};
LoadedCheckpoint* SchedulerTest::ckpt_ = nullptr;

TEST_P(SchedulerTest, GreedyTokensAreTheSameAloneAndInsideABatch) {
  // 20 prompts of different lengths; each alone, then all submitted together in waves of 8 so
  // that requests join a batch already decoding, with prefill chunks beside the decodes.
  constexpr int kPrompts = 20;
  std::vector<std::vector<int32_t>> alone(kPrompts);
  {
    Scheduler s(model_, {.max_running = 1, .max_step_tokens = 64});
    for (int i = 0; i < kPrompts; ++i) {
      Collector c;
      ASSERT_TRUE(s.submit(greedy(prompt(3 + (i * 7) % 40, i), 12 + i % 5), c.callbacks()));
      c.wait();
      alone[size_t(i)] = c.tokens[0];
      EXPECT_EQ(c.finish[0], FinishReason::Length);
    }
  }
  Scheduler s(model_, {.max_running = 8, .max_step_tokens = 24});
  std::vector<std::unique_ptr<Collector>> cs;
  for (int i = 0; i < kPrompts; ++i) {
    cs.push_back(std::make_unique<Collector>());
    ASSERT_TRUE(s.submit(greedy(prompt(3 + (i * 7) % 40, i), 12 + i % 5), cs.back()->callbacks()));
    if (i % 3 == 2) std::this_thread::sleep_for(2ms);
  }
  for (int i = 0; i < kPrompts; ++i) {
    cs[size_t(i)]->wait();
    EXPECT_EQ(cs[size_t(i)]->tokens[0], alone[size_t(i)]) << "request " << i;
  }
  // And the reference model's greedy decode (logits to ~1e-5) agrees on the first prompts.
  for (int i = 0; i < 3; ++i) {
    const GreedyRun ref = run_greedy(model_, prompt(3 + (i * 7) % 40, i), {.decode_steps = 12 + i % 5 - 1});
    EXPECT_EQ(ref.tokens, alone[size_t(i)]) << "request " << i;
  }
  const SchedulerStats st = s.stats();
  EXPECT_EQ(st.running, 0);
  EXPECT_EQ(st.waiting, 0);
  EXPECT_EQ(st.requests_finished_total, kPrompts);
}

TEST_P(SchedulerTest, ChoicesShareOnePrefillAndSampleWithTheirOwnSeeds) {
  Scheduler s(model_, {.max_running = 8});
  Collector greedy3(3);
  ScheduledRequest r = greedy(prompt(9, 1), 10);
  r.n = 3;
  s.submit(r, greedy3.callbacks());
  greedy3.wait();
  EXPECT_EQ(greedy3.tokens[0], greedy3.tokens[1]);
  EXPECT_EQ(greedy3.tokens[0], greedy3.tokens[2]);
  Collector one;
  s.submit(greedy(prompt(9, 1), 10), one.callbacks());
  one.wait();
  EXPECT_EQ(one.tokens[0], greedy3.tokens[0]);
  EXPECT_EQ(s.stats().prompt_tokens_total, 18);  // 9 for the n=3 request, 9 for the single one

  // Sampling: choice i uses seed + i, so the same seed reproduces each choice.
  auto sampled = [&](uint64_t seed, int n) {
    Collector c(n);
    ScheduledRequest q = greedy(prompt(9, 1), 16);
    q.n = n;
    q.sampling = {.temperature = 1.5f, .top_p = 1.0f, .seed = seed};
    s.submit(q, c.callbacks());
    c.wait();
    return c.tokens;
  };
  const auto a = sampled(7, 3), b = sampled(7, 3), c = sampled(8, 1);
  EXPECT_EQ(a, b);
  EXPECT_NE(a[0], a[1]);
  EXPECT_EQ(a[1], c[0]);  // choice 1 of seed 7 samples with seed 8
}

TEST_P(SchedulerTest, CancelAndDisconnectFreeTheRequestAtTheNextStep) {
  Scheduler s(model_, {.max_running = 4});
  Collector long_run, gone;
  auto st = s.submit(greedy(prompt(5, 2), 100000), long_run.callbacks());
  s.submit(greedy(prompt(6, 3), 100000), gone.callbacks());
  while (true) {
    {
      std::lock_guard lock(long_run.mu);
      if (long_run.tokens[0].size() >= 5) break;
    }
    std::this_thread::sleep_for(1ms);
  }
  st->cancel();
  gone.gone = true;
  long_run.wait();
  gone.wait();
  EXPECT_EQ(long_run.finish[0], FinishReason::Cancelled);
  EXPECT_EQ(gone.finish[0], FinishReason::Cancelled);
  for (int i = 0; i < 100 && !s.idle(); ++i) std::this_thread::sleep_for(5ms);
  EXPECT_TRUE(s.idle());
  EXPECT_EQ(s.stats().running, 0);
  EXPECT_EQ(s.stats().cache_tokens, 0);
}

TEST_P(SchedulerTest, BoundedQueueRefusesAndDrainRefuses) {
  Scheduler s(model_, {.max_running = 1, .max_queue = 1});
  Collector a, b, c;
  auto ra = s.submit(greedy(prompt(5, 1), 100000), a.callbacks());
  ASSERT_TRUE(ra);
  while (s.stats().running == 0) std::this_thread::sleep_for(1ms);
  auto rb = s.submit(greedy(prompt(5, 2), 4), b.callbacks());
  ASSERT_TRUE(rb);  // queued
  EXPECT_EQ(s.admission(), Scheduler::Admission::QueueFull);
  Scheduler::Admission why = Scheduler::Admission::Ok;
  EXPECT_FALSE(s.submit(greedy(prompt(5, 3), 4), c.callbacks(), &why));
  EXPECT_EQ(why, Scheduler::Admission::QueueFull);
  ra->cancel();
  a.wait();
  b.wait();
  EXPECT_EQ(b.finish[0], FinishReason::Length);
  s.drain();
  EXPECT_EQ(s.admission(), Scheduler::Admission::Draining);
  EXPECT_FALSE(s.submit(greedy(prompt(5, 3), 4), c.callbacks(), &why));
  EXPECT_EQ(why, Scheduler::Admission::Draining);
}

TEST_P(SchedulerTest, LogitBiasMinTokensStopCallbackAndLogprobs) {
  Scheduler s(model_, {.max_running = 4, .ctx_size = 64});
  // A +100 bias makes token 77 the argmax; with 77 also a stop id, min_tokens keeps it from
  // being sampled for 3 tokens, then it ends the request (not reported).
  Collector c;
  ScheduledRequest r = greedy(prompt(6, 1), 20);
  r.logit_bias = {{77, 100.0f}};
  r.stop_ids = {77};
  r.min_new_tokens = 3;
  r.top_logprobs = 2;
  s.submit(r, c.callbacks());
  c.wait();
  EXPECT_EQ(c.tokens[0].size(), 3u);
  EXPECT_EQ(c.finish[0], FinishReason::Eos);
  for (const auto& t : c.logprobs[0]) {
    EXPECT_LE(t.logprob, 0.0f);
    ASSERT_EQ(t.top_logprobs.size(), 2u);
    EXPECT_GE(t.top_logprobs[0].second, t.top_logprobs[1].second);
    EXPECT_GE(t.top_logprobs[0].second, t.logprob);  // greedy on biased logits: raw top is >= chosen
  }
  // The callback stops a choice: the token that said stop is reported, nothing after it.
  Collector d;
  d.keep_going = [](int, int32_t) { return false; };
  s.submit(greedy(prompt(6, 1), 20), d.callbacks());
  d.wait();
  EXPECT_EQ(d.tokens[0].size(), 1u);
  EXPECT_EQ(d.finish[0], FinishReason::Stop);
  // max_new_tokens is clipped to the context: 60 prompt tokens leave 4 of 64.
  Collector e;
  s.submit(greedy(prompt(60, 1), 1000), e.callbacks());
  e.wait();
  EXPECT_EQ(e.tokens[0].size(), 4u);
  EXPECT_EQ(e.finish[0], FinishReason::Length);
  EXPECT_THROW(s.submit(greedy(prompt(64, 1), 1), e.callbacks()), Error);
  EXPECT_THROW(s.submit(greedy({}, 1), e.callbacks()), Error);
  EXPECT_THROW(s.submit(greedy({5000}, 1), e.callbacks()), Error);
}

INSTANTIATE_TEST_SUITE_P(Threads, SchedulerTest, testing::Values(1, 2),
                         [](const auto& info) { return std::to_string(info.param) + "_threads"; });

}  // namespace
}  // namespace dsv3
