// The engine against DeepSeek's own inference/model.py (tests/data/golden): logits of the
// prefill and every greedy decode step, logits at every prompt position, the naive attention
// path, the MTP module (post-norm convention), and the experts chosen for every token.
// Bound: 1e-4 max abs (more than 10x the float32 noise of the reference itself).
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <numeric>
#include <set>

#include "backends/cpu/cpu_backend.h"
#include "base/error.h"
#include "model/model.h"
#include "ops/reference/reference.h"
#include "runtime/greedy.h"
#include "tests/golden_util.h"
#include "weights/loaded_checkpoint.h"

namespace dsv3 {
namespace {

constexpr float kTolerance = 1e-4f;

struct GoldenCase {
  std::string name, prompt, backend;
};

void PrintTo(const GoldenCase& c, std::ostream* os) { *os << c.name << "/" << c.prompt << "/" << c.backend; }

std::string case_label(const testing::TestParamInfo<GoldenCase>& info) {
  std::string s = info.param.name + "_" + info.param.prompt + "_" + info.param.backend;
  std::replace(s.begin(), s.end(), '-', '_');
  return s;
}

class GoldenTest : public testing::TestWithParam<GoldenCase> {
 protected:
  void SetUp() override {
    const auto& p = GetParam();
    dir_ = test::golden_dir(p.name);
    prompt_dir_ = dir_ + "/" + p.prompt;
    ckpt_ = LoadedCheckpoint::load(dir_, {.mtp = true});
    if (p.backend == "reference") {
      backend_ = std::make_unique<ReferenceBackend>();
    } else {
      pool_ = std::make_unique<ThreadPool>(p.backend == "cpu2" ? 2 : 1);
      backend_ = std::make_unique<CpuBackend>(*pool_);
    }
    model_ = std::make_unique<Model>(ckpt_->config, ckpt_->weights, *backend_);
    const auto pj = test::read_json(prompt_dir_ + "/prompt.json");
    prompt_ = pj.at("tokens").get<std::vector<int32_t>>();
    decode_steps_ = pj.at("decode_steps").get<int64_t>();
    vocab_ = ckpt_->config.vocab_size;
  }

  std::string dir_, prompt_dir_;
  std::unique_ptr<LoadedCheckpoint> ckpt_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Model> model_;
  std::vector<int32_t> prompt_;
  int64_t decode_steps_ = 0, vocab_ = 0;
};

void expect_rows_close(const std::vector<float>& got, const std::vector<float>& want, int64_t vocab,
                       const std::string& what) {
  ASSERT_FALSE(want.empty()) << what << ": golden file missing";
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t r = 0; r < want.size() / size_t(vocab); ++r)
    EXPECT_LE(test::max_abs_diff(got.data() + r * vocab, want.data() + r * vocab, size_t(vocab)), kTolerance)
        << what << " row " << r;
}

TEST_P(GoldenTest, AbsorbedLogitsTokensAndRouting) {
  RoutingTrace trace;
  const GreedyRun run = run_greedy(*model_, prompt_, {.decode_steps = decode_steps_, .trace = &trace});
  expect_rows_close(run.logits, test::read_f32(prompt_dir_ + "/logits.bin"), vocab_, "logits.bin");
  const auto greedy = test::read_json(prompt_dir_ + "/greedy.json");
  EXPECT_EQ(run.tokens, greedy.at("tokens").get<std::vector<int32_t>>());

  // routing.json lists model.py's Gate calls in order: prefill layers, then each decode step.
  const auto routing = test::read_json(prompt_dir_ + "/routing.json").at("calls");
  std::vector<nlohmann::json> main_calls;
  for (const auto& c : routing)
    if (c.at("phase").get<std::string>().rfind("mtp", 0) != 0) main_calls.push_back(c);
  ASSERT_EQ(trace.calls.size(), main_calls.size());
  const int64_t K = ckpt_->config.num_experts_per_tok;
  for (size_t i = 0; i < main_calls.size(); ++i) {
    const auto want = main_calls[i].at("experts").get<std::vector<std::vector<int32_t>>>();
    const auto want_w = main_calls[i].at("weights").get<std::vector<std::vector<float>>>();
    ASSERT_EQ(trace.calls[i].experts.size(), want.size() * size_t(K)) << "call " << i;
    for (size_t t = 0; t < want.size(); ++t) {
      std::vector<std::pair<int32_t, float>> got, exp;
      for (int64_t k = 0; k < K; ++k) {
        got.emplace_back(trace.calls[i].experts[t * K + k], trace.calls[i].weights[t * K + k]);
        exp.emplace_back(want[t][size_t(k)], want_w[t][size_t(k)]);
      }
      std::sort(got.begin(), got.end());
      std::sort(exp.begin(), exp.end());
      for (int64_t k = 0; k < K; ++k) {
        EXPECT_EQ(got[k].first, exp[k].first) << main_calls[i].at("phase") << " token " << t;
        EXPECT_NEAR(got[k].second, exp[k].second, kTolerance) << main_calls[i].at("phase") << " token " << t;
      }
    }
  }
}

TEST_P(GoldenTest, NaiveAttentionLogits) {
  const GreedyRun run = run_greedy(*model_, prompt_, {.decode_steps = decode_steps_, .absorbed = false});
  expect_rows_close(run.logits, test::read_f32(prompt_dir_ + "/logits_naive.bin"), vocab_, "logits_naive.bin");
}

TEST_P(GoldenTest, PrefillLogitsAtEveryPosition) {
  SequenceCache cache = model_->new_cache();
  SequenceCache* caches[] = {&cache};
  std::vector<StepEntry> entries;
  std::vector<int32_t> rows(prompt_.size());
  std::iota(rows.begin(), rows.end(), 0);
  for (size_t i = 0; i < prompt_.size(); ++i) entries.push_back({0, prompt_[i], int32_t(i)});
  std::vector<float> hidden(prompt_.size() * size_t(ckpt_->config.hidden_size));
  std::vector<float> logits(prompt_.size() * size_t(vocab_));
  model_->forward(entries, caches, {.logit_rows = rows}, hidden.data(), logits.data());
  expect_rows_close(logits, test::read_f32(prompt_dir_ + "/prefill_logits.bin"), vocab_, "prefill_logits.bin");
}

// A prompt served partly from another sequence's cache blocks (what the prefix cache hands a
// request) gives the golden logits at every later position, as a cold prefill does.
TEST_P(GoldenTest, PrefillFromSharedBlocksMatchesTheGolden) {
  const std::vector<float> want = test::read_f32(prompt_dir_ + "/prefill_logits.bin");
  const int64_t L = int64_t(prompt_.size()), H = ckpt_->config.hidden_size;
  for (int64_t bs : {4, 8}) {
    auto pool = std::make_shared<BlockPool>(model_->cache_layout(bs), 0);
    SequenceCache first(pool);
    SequenceCache* c1[] = {&first};
    std::vector<StepEntry> entries;
    for (int64_t i = 0; i < L; ++i) entries.push_back({0, prompt_[size_t(i)], int32_t(i)});
    std::vector<float> hidden(size_t(L * H));
    std::vector<float> logits(static_cast<size_t>(vocab_));
    const int32_t last[] = {int32_t(L - 1)};
    model_->forward(entries, c1, {.logit_rows = last}, hidden.data(), logits.data());
    // The second sequence adopts the first's full blocks below the last position and prefills
    // the rest, with logits at every position it computes.
    const int64_t shared = (L - 1) / bs;
    if (shared == 0) continue;
    SequenceCache second(pool);
    second.adopt(first.blocks().first(size_t(shared)), shared * bs, model_->cache_layers());
    SequenceCache* c2[] = {&second};
    std::vector<StepEntry> rest(entries.begin() + shared * bs, entries.end());
    std::vector<int32_t> rows(rest.size());
    std::iota(rows.begin(), rows.end(), 0);
    std::vector<float> got(rest.size() * size_t(vocab_));
    model_->forward(rest, c2, {.logit_rows = rows}, hidden.data(), got.data());
    for (size_t r = 0; r < rest.size(); ++r)
      EXPECT_LE(test::max_abs_diff(got.data() + r * size_t(vocab_), want.data() + (size_t(shared * bs) + r) * size_t(vocab_),
                                   size_t(vocab_)),
                kTolerance)
          << "block size " << bs << ", position " << shared * bs + int64_t(r);
  }
}

// The BF16 cache (--kv-cache-dtype bf16) against the same goldens: not within 1e-4 (its rows are
// rounded), so the drift is measured and reported. Seen: 0.01-0.02 on most prompts, 0.1 on one,
// 0.83 on one where a rounded row flips an expert choice (MoE routing is discontinuous); the
// greedy tokens were equal on every golden, which is what is asserted, with a loose bound that
// a broken cache (zero or misplaced rows) exceeds.
TEST_P(GoldenTest, Bf16CacheDriftIsReported) {
  const GreedyRun run =
      run_greedy(*model_, prompt_, {.decode_steps = decode_steps_, .cache_dtype = CacheDtype::BF16});
  const std::vector<float> want = test::read_f32(prompt_dir_ + "/logits.bin");
  ASSERT_EQ(run.logits.size(), want.size());
  const double drift = test::max_abs_diff(run.logits.data(), want.data(), want.size());
  const auto greedy = test::read_json(prompt_dir_ + "/greedy.json").at("tokens").get<std::vector<int32_t>>();
  size_t same = 0;
  while (same < greedy.size() && same < run.tokens.size() && run.tokens[same] == greedy[same]) ++same;
  std::printf("[ bf16 cache ] %s/%s: max |logit - golden| %.3g, greedy tokens equal for %zu of %zu\n",
              GetParam().name.c_str(), GetParam().prompt.c_str(), drift, same, greedy.size());
  RecordProperty("bf16_max_abs", std::to_string(drift));
  RecordProperty("bf16_greedy_prefix", std::to_string(same));
  EXPECT_EQ(run.tokens, greedy);
  EXPECT_LT(drift, 1.5);
  EXPECT_GT(drift, 0.0);  // the rows really are BF16
}

TEST_P(GoldenTest, MtpLogitsPostNorm) {
  if (!model_->has_mtp()) {  // no MTP layer: asking for MTP logits is a clear error
    EXPECT_THROW(run_greedy(*model_, prompt_, {.mtp = true}), Error);
    return;
  }
  RoutingTrace trace;
  const GreedyRun run = run_greedy(*model_, prompt_, {.decode_steps = 0, .mtp = true, .trace = &trace});
  expect_rows_close(run.mtp_logits, test::read_f32(prompt_dir_ + "/mtp_logits_postnorm.bin"), vocab_,
                    "mtp_logits_postnorm.bin");
  nlohmann::json want;
  const nlohmann::json routing = test::read_json(prompt_dir_ + "/routing.json");
  for (const auto& c : routing.at("calls"))
    if (c.at("phase") == "mtp_postnorm") want = c;
  ASSERT_FALSE(want.is_null());
  const auto& last = trace.calls.back();  // the MTP layer's gate is the last call
  EXPECT_EQ(last.layer, ckpt_->config.num_hidden_layers);
  const auto experts = want.at("experts").get<std::vector<std::vector<int32_t>>>();
  const int64_t K = ckpt_->config.num_experts_per_tok;
  ASSERT_EQ(last.experts.size(), experts.size() * size_t(K));
  for (size_t t = 0; t < experts.size(); ++t) {
    std::set<int32_t> got(last.experts.begin() + t * K, last.experts.begin() + (t + 1) * K);
    EXPECT_EQ(got, std::set<int32_t>(experts[t].begin(), experts[t].end())) << "MTP token " << t;
  }
}

std::vector<GoldenCase> all_cases() {
  std::vector<GoldenCase> out;
  const std::pair<std::vector<const char*>, std::vector<const char*>> sets[] = {
      {{"v3-tiny-fp8", "v3-tiny-bf16", "v2-lite-tiny-bf16"}, {"prompt7", "prompt19"}},
      {{"v3-wide-fp8", "v2-groups-bf16", "k2-style-fp8"}, {"p3", "p40"}},  // see tests/data/golden/SOURCES.md
  };
  for (const auto& [cases, prompts] : sets)
    for (const char* c : cases)
      for (const char* p : prompts)
        for (const char* b : {"reference", "cpu1", "cpu2"}) out.push_back({c, p, b});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Golden, GoldenTest, testing::ValuesIn(all_cases()), case_label);

}  // namespace
}  // namespace dsv3
