#include "runtime/engine.h"

#include <gtest/gtest.h>

#include "base/error.h"
#include "ops/reference/reference.h"
#include "runtime/greedy.h"
#include "weights/loaded_checkpoint.h"

namespace dsv3 {
namespace {

class EngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { ckpt_ = LoadedCheckpoint::load("tests/data/golden/v3-tiny-fp8").release(); }
  static void TearDownTestSuite() {
    delete ckpt_;
    ckpt_ = nullptr;
  }
  EngineTest() : model_(ckpt_->config, ckpt_->weights, backend_) {}

  static std::vector<int32_t> prompt(int n, int salt) {
    std::vector<int32_t> p{0};
    for (int i = 1; i < n; ++i) p.push_back((i * 37 + salt * 101) % 1000 + 2);
    return p;
  }

  static LoadedCheckpoint* ckpt_;
  ReferenceBackend backend_;
  Model model_;
};
LoadedCheckpoint* EngineTest::ckpt_ = nullptr;

TEST_F(EngineTest, GreedyBatchEqualsEachAloneAndTheGreedyReference) {
  std::vector<GenerationRequest> batch;
  const int lengths[] = {7, 19, 1, 12};
  const int64_t limits[] = {8, 5, 9, 1};
  for (int i = 0; i < 4; ++i) batch.push_back({.prompt = prompt(lengths[i], i), .sampling = {.temperature = 0},
                                               .max_new_tokens = limits[i]});
  Engine engine(model_, {.max_step_tokens = 16});  // forces chunked prefill mixed with decodes
  std::vector<std::vector<int32_t>> streamed(4);
  const auto together = engine.generate(batch, [&](size_t i, int32_t t) {
    streamed[i].push_back(t);
    return true;
  });
  for (int i = 0; i < 4; ++i) {
    std::vector<GenerationRequest> one{batch[size_t(i)]};
    const auto alone = Engine(model_).generate(one);
    EXPECT_EQ(together[size_t(i)].tokens, alone[0].tokens) << "request " << i;
    EXPECT_EQ(streamed[size_t(i)], together[size_t(i)].tokens);
    EXPECT_EQ(together[size_t(i)].finish, FinishReason::Length);
    EXPECT_EQ(int64_t(together[size_t(i)].tokens.size()), limits[i]);
    const GreedyRun ref = run_greedy(model_, batch[size_t(i)].prompt, {.decode_steps = limits[i] - 1});
    EXPECT_EQ(together[size_t(i)].tokens, ref.tokens) << "request " << i;
  }
}

TEST_F(EngineTest, StopsOnEosAndOnTheCallback) {
  const auto p = prompt(7, 0);
  std::vector<GenerationRequest> r{{.prompt = p, .sampling = {.temperature = 0}, .max_new_tokens = 8}};
  const auto free_run = Engine(model_).generate(r)[0].tokens;
  ASSERT_EQ(free_run.size(), 8u);
  r[0].stop_ids = {free_run[3]};
  const auto eos = Engine(model_).generate(r)[0];
  EXPECT_EQ(eos.finish, FinishReason::Eos);
  const size_t first = size_t(std::find(free_run.begin(), free_run.end(), free_run[3]) - free_run.begin());
  EXPECT_EQ(eos.tokens, std::vector<int32_t>(free_run.begin(), free_run.begin() + long(first)));
  r[0].stop_ids.clear();
  const auto stopped = Engine(model_).generate(r, [](size_t, int32_t) { return false; })[0];
  EXPECT_EQ(stopped.finish, FinishReason::Stop);
  EXPECT_EQ(stopped.tokens.size(), 1u);
}

TEST_F(EngineTest, SameSeedSameOutput) {
  auto run = [&](uint64_t seed) {
    std::vector<GenerationRequest> r;
    for (int i = 0; i < 2; ++i)
      r.push_back({.prompt = prompt(5 + 3 * i, i), .sampling = {.temperature = 1.0f, .top_p = 0.9f, .seed = seed},
                   .max_new_tokens = 12});
    std::vector<std::vector<int32_t>> out;
    for (auto& g : Engine(model_).generate(r)) out.push_back(g.tokens);
    return out;
  };
  EXPECT_EQ(run(5), run(5));
  EXPECT_NE(run(5), run(6));
}

TEST_F(EngineTest, SessionReusesTheCommonPrefix) {
  Session session(model_);
  auto p1 = prompt(10, 3);
  std::vector<GenerationRequest> r{{.prompt = p1, .sampling = {.temperature = 0}, .max_new_tokens = 4, .session = &session}};
  const auto first = Engine(model_).generate(r)[0];
  EXPECT_EQ(first.reused_tokens, 0);
  // The next turn extends the conversation: prompt + reply + more.
  auto p2 = p1;
  p2.insert(p2.end(), first.tokens.begin(), first.tokens.end());
  p2.push_back(5);
  p2.push_back(9);
  r[0].prompt = p2;
  const auto second = Engine(model_).generate(r)[0];
  EXPECT_EQ(second.reused_tokens, int64_t(p1.size() + first.tokens.size() - 1));
  r[0].session = nullptr;
  EXPECT_EQ(Engine(model_).generate(r)[0].tokens, second.tokens);
}

TEST_F(EngineTest, CancelEndsEveryRequest) {
  std::atomic<bool> cancel{false};
  std::vector<GenerationRequest> r{{.prompt = prompt(4, 1), .sampling = {.temperature = 0}, .max_new_tokens = 50}};
  const auto res = Engine(model_).generate(r, [&](size_t, int32_t) {
    cancel = true;
    return true;
  }, &cancel)[0];
  EXPECT_EQ(res.finish, FinishReason::Cancelled);
  EXPECT_EQ(res.tokens.size(), 1u);
}

TEST_F(EngineTest, RejectsBadRequests) {
  std::vector<GenerationRequest> r{{.prompt = {}}};
  EXPECT_THROW(Engine(model_).generate(r), Error);
  r[0].prompt = {5000};
  EXPECT_THROW(Engine(model_).generate(r), Error);
  r[0] = {.prompt = {1}, .max_new_tokens = 0};
  EXPECT_THROW(Engine(model_).generate(r), Error);
}

}  // namespace
}  // namespace dsv3
