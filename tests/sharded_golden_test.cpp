// The sharded model (weights/shard.h, Model over a Comm) against DeepSeek's reference in one
// process: 2 and 3 ranks as threads (tests/thread_comm.h), each with its own part of the
// weights. Every rank must produce the golden logits (1e-4), greedy tokens, experts and MTP
// logits, the same on every rank; a prompt prefilled in chunks of 3 gives the golden logits at every position.
// mpi_test.cpp runs the same model across processes under mpirun.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <numeric>
#include <thread>

#include "backends/cpu/cpu_backend.h"
#include "model/model.h"
#include "runtime/greedy.h"
#include "tests/golden_util.h"
#include "tests/thread_comm.h"
#include "weights/loaded_checkpoint.h"
#include "weights/shard.h"

namespace dsv3 {
namespace {

struct RankResult {
  GreedyRun run;
  RoutingTrace trace;
  std::vector<float> chunked;  // logits at every prompt position, prefilled 3 tokens a step
  std::string error;
};

RankResult run_rank(const std::string& dir, const std::vector<int32_t>& prompt, int64_t steps, bool mtp,
                    test::ThreadGroup& g, int rank) {
  RankResult out;
  test::ThreadComm comm(g, rank);
  auto lc = LoadedCheckpoint::load(dir, {.mtp = true});  // the MTP logits are compared too
  shard_weights(lc->weights, lc->config, ShardPlan::make(lc->config, rank, g.size));
  ThreadPool pool(1);
  CpuBackend backend(pool);
  Model model(lc->config, lc->weights, backend, comm);
  out.run = run_greedy(model, prompt, {.decode_steps = steps, .trace = &out.trace});
  if (mtp) out.run.mtp_logits = run_greedy(model, prompt, {.decode_steps = 0, .mtp = true}).mtp_logits;
  SequenceCache cache = model.new_cache();
  SequenceCache* caches[] = {&cache};
  const int64_t V = lc->config.vocab_size, H = lc->config.hidden_size;
  out.chunked.resize(prompt.size() * size_t(V));
  for (size_t b = 0; b < prompt.size(); b += 3) {
    std::vector<StepEntry> entries;
    for (size_t i = b; i < std::min(prompt.size(), b + 3); ++i) entries.push_back({0, prompt[i], int32_t(i)});
    std::vector<int32_t> rows(entries.size());
    std::iota(rows.begin(), rows.end(), 0);
    std::vector<float> hidden(entries.size() * size_t(H));
    model.forward(entries, caches, {.logit_rows = rows}, hidden.data(), out.chunked.data() + b * size_t(V));
  }
  return out;
}

TEST(ShardedGolden, EveryCaseOnTwoAndThreeRanksMatchesTheReference) {
  namespace fs = std::filesystem;
  int checked = 0;
  for (const auto& c : fs::directory_iterator("tests/data/golden")) {
    if (!c.is_directory()) continue;
    const std::string dir = c.path().string();
    const auto config = test::read_json(dir + "/config.json");
    const int64_t V = config["vocab_size"].get<int64_t>(), K = config["num_experts_per_tok"].get<int64_t>();
    for (const auto& p : fs::directory_iterator(c.path())) {
      if (!fs::exists(p.path() / "logits.bin")) continue;
      const std::string pdir = p.path().string();
      const auto pj = test::read_json(pdir + "/prompt.json");
      const auto prompt = pj.at("tokens").get<std::vector<int32_t>>();
      const auto steps = pj.at("decode_steps").get<int64_t>();
      const auto golden = test::read_f32(pdir + "/logits.bin");
      const auto golden_prefill = test::read_f32(pdir + "/prefill_logits.bin");
      const auto golden_mtp = test::read_f32(pdir + "/mtp_logits_postnorm.bin");  // V3 cases only
      const auto tokens = test::read_json(pdir + "/greedy.json").at("tokens").get<std::vector<int32_t>>();
      std::vector<std::vector<int32_t>> experts;  // main-model Gate calls, experts sorted per token
      const auto routing = test::read_json(pdir + "/routing.json");  // (a temporary's .at() would dangle)
      for (const auto& call : routing.at("calls")) {
        if (call.at("phase").get<std::string>().rfind("mtp", 0) == 0) continue;
        for (auto e : call.at("experts").get<std::vector<std::vector<int32_t>>>()) {
          std::sort(e.begin(), e.end());
          experts.push_back(e);
        }
      }
      for (int world : {2, 3}) {
        if (config["num_attention_heads"].get<int>() < world) continue;
        SCOPED_TRACE(pdir + " on " + std::to_string(world) + " ranks");
        test::ThreadGroup g(world);
        std::vector<RankResult> results(static_cast<size_t>(world));
        std::vector<std::thread> threads;
        for (int r = 0; r < world; ++r)
          threads.emplace_back([&, r] { results[size_t(r)] = run_rank(dir, prompt, steps, !golden_mtp.empty(), g, r); });
        for (auto& t : threads) t.join();
        for (int r = 0; r < world; ++r) {
          const RankResult& x = results[size_t(r)];
          EXPECT_LE(test::max_abs_diff(x.run.logits, golden), 1e-4f) << "rank " << r;
          EXPECT_EQ(x.run.logits, results[0].run.logits) << "rank " << r << " differs from rank 0";
          EXPECT_EQ(x.run.tokens, tokens) << "rank " << r;
          EXPECT_LE(test::max_abs_diff(x.chunked, golden_prefill), 1e-4f) << "chunked prefill, rank " << r;
          if (!golden_mtp.empty()) {
            EXPECT_LE(test::max_abs_diff(x.run.mtp_logits, golden_mtp), 1e-4f) << "MTP, rank " << r;
          }
          std::vector<std::vector<int32_t>> got;
          for (const auto& call : x.trace.calls)
            for (size_t t = 0; t * size_t(K) < call.experts.size(); ++t) {
              std::vector<int32_t> e(call.experts.begin() + long(t * K), call.experts.begin() + long((t + 1) * K));
              std::sort(e.begin(), e.end());
              got.push_back(e);
            }
          EXPECT_EQ(got, experts) << "rank " << r;
        }
        ++checked;
      }
      (void)V;
    }
  }
  EXPECT_GE(checked, 15);
}

}  // namespace
}  // namespace dsv3
