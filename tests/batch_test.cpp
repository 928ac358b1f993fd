// Equivalences the reference cannot show: several sequences of different lengths in one step
// equal each run alone; a prompt prefilled in chunks equals one prefill; decode of one sequence
// mixed with the prefill of another equals both run apart.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>

#include "backends/cpu/cpu_backend.h"
#include "base/error.h"
#include "model/model.h"
#include "tests/golden_util.h"
#include "weights/loaded_checkpoint.h"

namespace dsv3 {
namespace {

// Batched and unbatched runs sum in the same order per row today; the bound leaves room for
// kernels that block rows differently (float32 rounding of ~1e-6 on logits of std 1).
constexpr float kTolerance = 2e-5f;

class BatchTest : public testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    ckpt_ = LoadedCheckpoint::load(test::golden_dir(GetParam()));
    pool_ = std::make_unique<ThreadPool>(1);
    backend_ = std::make_unique<CpuBackend>(*pool_);
    model_ = std::make_unique<Model>(ckpt_->config, ckpt_->weights, *backend_);
    V_ = ckpt_->config.vocab_size;
    H_ = ckpt_->config.hidden_size;
  }

  // Logits at every entry of one step over the given caches.
  std::vector<float> step(const std::vector<StepEntry>& entries, std::vector<SequenceCache*> caches) {
    std::vector<int32_t> rows(entries.size());
    for (size_t i = 0; i < rows.size(); ++i) rows[i] = int32_t(i);
    std::vector<float> hidden(entries.size() * size_t(H_)), logits(entries.size() * size_t(V_));
    model_->forward(entries, caches, {.logit_rows = rows}, hidden.data(), logits.data());
    return logits;
  }

  static std::vector<StepEntry> prefill(int32_t seq, const std::vector<int32_t>& tokens, int32_t start = 0) {
    std::vector<StepEntry> e;
    for (size_t i = 0; i < tokens.size(); ++i) e.push_back({seq, tokens[i], start + int32_t(i)});
    return e;
  }

  std::unique_ptr<LoadedCheckpoint> ckpt_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Model> model_;
  int64_t V_ = 0, H_ = 0;
};

const std::vector<std::vector<int32_t>> kPrompts = {
    {0, 17, 345, 1023, 512, 77, 900}, {5, 611}, {0, 5, 611, 128, 129, 940, 3, 777, 256, 1000, 42, 42}, {9}};

TEST_P(BatchTest, SequencesOfDifferentLengthsInOneStepEqualEachAlone) {
  std::vector<std::vector<float>> alone;
  for (const auto& p : kPrompts) {
    SequenceCache c = model_->new_cache();
    alone.push_back(step(prefill(0, p), {&c}));
  }
  std::vector<SequenceCache> caches;
  for (size_t s = 0; s < kPrompts.size(); ++s) caches.push_back(model_->new_cache());
  std::vector<SequenceCache*> ptrs;
  for (auto& c : caches) ptrs.push_back(&c);
  // Interleave the sequences' tokens so the batch is not just a concatenation.
  std::vector<StepEntry> entries;
  std::vector<std::pair<size_t, size_t>> where;  // (sequence, index in prompt) per entry
  for (size_t i = 0; i < 12; ++i)
    for (size_t s = 0; s < kPrompts.size(); ++s)
      if (i < kPrompts[s].size()) {
        entries.push_back({int32_t(s), kPrompts[s][i], int32_t(i)});
        where.emplace_back(s, i);
      }
  const auto batched = step(entries, ptrs);
  for (size_t e = 0; e < entries.size(); ++e) {
    const auto [s, i] = where[e];
    EXPECT_LE(test::max_abs_diff(batched.data() + e * V_, alone[s].data() + i * V_, size_t(V_)), kTolerance)
        << "sequence " << s << " position " << i;
  }
}

TEST_P(BatchTest, ChunkedPrefillEqualsOnePrefill) {
  const auto& p = kPrompts[2];
  SequenceCache one = model_->new_cache();
  const auto whole = step(prefill(0, p), {&one});
  for (size_t chunk : {1, 3, 5}) {
    SequenceCache c = model_->new_cache();
    for (size_t b = 0; b < p.size(); b += chunk) {
      std::vector<int32_t> part(p.begin() + long(b), p.begin() + long(std::min(p.size(), b + chunk)));
      const auto got = step(prefill(0, part, int32_t(b)), {&c});
      EXPECT_LE(test::max_abs_diff(got.data(), whole.data() + b * V_, got.size()), kTolerance)
          << "chunk " << chunk << " at " << b;
    }
  }
}

TEST_P(BatchTest, DecodeMixedWithPrefillEqualsApart) {
  // Sequence 0 has its prompt cached and decodes one token while sequence 1 prefills.
  SequenceCache a0 = model_->new_cache(), b0 = model_->new_cache();
  step(prefill(0, kPrompts[0]), {&a0});
  const auto decode_alone = step({{0, 42, int32_t(kPrompts[0].size())}}, {&a0});
  const auto prefill_alone = step(prefill(0, kPrompts[2]), {&b0});

  SequenceCache a1 = model_->new_cache(), b1 = model_->new_cache();
  step(prefill(0, kPrompts[0]), {&a1});
  std::vector<StepEntry> mixed = prefill(1, kPrompts[2]);
  mixed.insert(mixed.begin() + 3, {0, 42, int32_t(kPrompts[0].size())});
  const auto got = step(mixed, {&a1, &b1});
  EXPECT_LE(test::max_abs_diff(got.data() + 3 * V_, decode_alone.data(), size_t(V_)), kTolerance);
  for (size_t i = 0; i < kPrompts[2].size(); ++i) {
    const size_t e = i < 3 ? i : i + 1;
    EXPECT_LE(test::max_abs_diff(got.data() + e * V_, prefill_alone.data() + i * V_, size_t(V_)), kTolerance)
        << "prefill position " << i;
  }
}

TEST_P(BatchTest, RejectsBadEntries) {
  SequenceCache c = model_->new_cache();
  EXPECT_THROW(step({{0, int32_t(V_), 0}}, {&c}), Error);  // token id == vocab_size
  EXPECT_THROW(step({{0, 1, 2}}, {&c}), Error);            // gap: position 2 of an empty cache
  EXPECT_THROW(step({{1, 1, 0}}, {&c}), Error);            // no such sequence
  try {
    step({{0, int32_t(V_) + 5, 0}}, {&c});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("out of range"), std::string::npos) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Batch, BatchTest, testing::Values("v3-tiny-fp8", "v2-lite-tiny-bf16"),
                         [](const auto& info) {
                           std::string s = info.param;
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

}  // namespace
}  // namespace dsv3
