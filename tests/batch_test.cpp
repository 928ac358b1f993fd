// Batch invariance: at a fixed thread count, one entry's hidden state and logits are the same bit
// for bit whatever else shares its step: alone or beside decode entries of other sequences with
// other context lengths, beside prefill chunks, and for a prompt whatever its chunking into steps.
// This is what makes a server's answers at temperature 0 reproducible under continuous batching
// (the kernels' reduction order per output must not depend on the batch; see cpu_backend.h).
// Each case runs on 1 and 2 threads, compared against itself at the same thread count.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <tuple>

#include "backends/cpu/cpu_backend.h"
#include "base/error.h"
#include "model/model.h"
#include "tests/golden_util.h"
#include "weights/loaded_checkpoint.h"

namespace dsv3 {
namespace {

// Both outputs of a step, per entry.
struct StepOut {
  std::vector<float> hidden;  // [n, hidden_size]
  std::vector<float> logits;  // [n, vocab_size]
};

// The first element whose bits differ, or "" when a[0 .. n) and b[0 .. n) are the same bits.
std::string first_difference(const float* a, const float* b, int64_t n) {
  if (std::memcmp(a, b, size_t(n) * sizeof(float)) == 0) return "";
  int64_t i = 0;
  while (std::memcmp(a + i, b + i, sizeof(float)) == 0) ++i;
  char buf[160];
  std::snprintf(buf, sizeof(buf), "element %lld: %.9g vs %.9g (max abs diff %.3g)", (long long)i, a[i], b[i],
                test::max_abs_diff(a, b, size_t(n)));
  return buf;
}

class BatchTest : public testing::TestWithParam<std::tuple<std::string, int>> {
 protected:
  void SetUp() override {
    ckpt_ = LoadedCheckpoint::load(test::golden_dir(std::get<0>(GetParam())));
    pool_ = std::make_unique<ThreadPool>(std::get<1>(GetParam()));
    backend_ = std::make_unique<CpuBackend>(*pool_);
    model_ = std::make_unique<Model>(ckpt_->config, ckpt_->weights, *backend_);
    V_ = ckpt_->config.vocab_size;
    H_ = ckpt_->config.hidden_size;
  }

  // Hidden state and logits at every entry of one step over the given caches.
  StepOut step(const std::vector<StepEntry>& entries, std::vector<SequenceCache*> caches) {
    std::vector<int32_t> rows(entries.size());
    for (size_t i = 0; i < rows.size(); ++i) rows[i] = int32_t(i);
    StepOut o{std::vector<float>(entries.size() * size_t(H_)), std::vector<float>(entries.size() * size_t(V_))};
    model_->forward(entries, caches, {.logit_rows = rows}, o.hidden.data(), o.logits.data());
    return o;
  }

  // Entry `e` of `got` against entry `want_e` of `want`, both outputs, bit for bit.
  void expect_same(const StepOut& got, size_t e, const StepOut& want, size_t want_e, const std::string& what) {
    const std::string dh = first_difference(got.hidden.data() + e * H_, want.hidden.data() + want_e * H_, H_);
    EXPECT_EQ(dh, "") << what << ": hidden state";
    const std::string dl = first_difference(got.logits.data() + e * V_, want.logits.data() + want_e * V_, V_);
    EXPECT_EQ(dl, "") << what << ": logits";
  }

  static std::vector<StepEntry> prefill(int32_t seq, const std::vector<int32_t>& tokens, int32_t start = 0) {
    std::vector<StepEntry> e;
    for (size_t i = 0; i < tokens.size(); ++i) e.push_back({seq, tokens[i], start + int32_t(i)});
    return e;
  }

  // A prompt of `len` tokens that differs from seed to seed.
  std::vector<int32_t> prompt(int64_t len, uint32_t seed) const {
    std::vector<int32_t> t(static_cast<size_t>(len));
    for (int64_t i = 0; i < len; ++i) t[size_t(i)] = int32_t((uint64_t(i) * 7919 + seed * 104729 + 13) % uint64_t(V_));
    return t;
  }

  // A cache holding `tokens`, prefilled in one step.
  SequenceCache cache_with(const std::vector<int32_t>& tokens) {
    SequenceCache c = model_->new_cache();
    step(prefill(0, tokens), {&c});
    return c;
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
  std::vector<StepOut> alone;
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
  const StepOut batched = step(entries, ptrs);
  for (size_t e = 0; e < entries.size(); ++e) {
    const auto [s, i] = where[e];
    expect_same(batched, e, alone[s], i, "sequence " + std::to_string(s) + " position " + std::to_string(i));
  }
}

TEST_P(BatchTest, DecodeEntryAloneEqualsInsideStepsOfOtherSequences) {
  // Context lengths on both sides of the attention's split into parts, and of the many-token
  // paths (16 entries and more go through the prefill kernels).
  const std::vector<int64_t> lengths = {300, 1,  7,   129, 40, 513, 2, 260, 17,  96,
                                        333, 5, 64, 700, 12, 200, 31, 3, 450, 90};
  std::vector<SequenceCache> caches;
  for (size_t s = 0; s < lengths.size(); ++s) caches.push_back(cache_with(prompt(lengths[s], uint32_t(s))));
  std::vector<SequenceCache*> ptrs;
  for (auto& c : caches) ptrs.push_back(&c);
  auto entry = [&](size_t s) { return StepEntry{int32_t(s), int32_t((s * 31 + 7) % size_t(V_)), int32_t(lengths[s])}; };
  // Each sequence's next token alone (writing its cache row; the batched steps write the same row
  // again, with the same bits when the step is batch-invariant).
  std::vector<StepOut> alone;
  for (size_t s = 0; s < lengths.size(); ++s) alone.push_back(step({entry(s)}, ptrs));
  for (size_t n : {2, 5, 8, 17, 20}) {
    // Sequences n-1, n-2, ... 0: sequence 0 (context 300) last, the others before it in varying order.
    std::vector<StepEntry> entries;
    for (size_t k = 0; k < n; ++k) entries.push_back(entry((n - 1 - k + 3 * n) % n));
    const StepOut got = step(entries, ptrs);
    for (size_t e = 0; e < n; ++e)
      expect_same(got, e, alone[size_t(entries[e].seq)], 0,
                  "step of " + std::to_string(n) + " decode entries, sequence " + std::to_string(entries[e].seq) +
                      " (context " + std::to_string(lengths[size_t(entries[e].seq)]) + ")");
  }
}

TEST_P(BatchTest, ChunkedPrefillInterleavedWithOtherSequencesEqualsWholePrefill) {
  const std::vector<int32_t> a = prompt(45, 101), b = prompt(29, 102);
  SequenceCache a_whole = model_->new_cache(), b_whole = model_->new_cache();
  const StepOut a_want = step(prefill(0, a), {&a_whole});
  const StepOut b_want = step(prefill(0, b), {&b_whole});
  for (size_t chunk : {size_t(1), size_t(3), size_t(17), a.size()}) {
    // Sequence 0 prefills `a` in chunks; in the same steps sequence 1 prefills `b` in chunks of 5
    // and sequences 2 and 3 decode, their entries placed between a's.
    SequenceCache ca = model_->new_cache(), cb = model_->new_cache();
    SequenceCache c2 = cache_with(prompt(70, 103)), c3 = cache_with(prompt(9, 104));
    std::vector<SequenceCache*> ptrs = {&ca, &cb, &c2, &c3};
    int32_t pos2 = 70, pos3 = 9;
    for (size_t at = 0, bt = 0; at < a.size(); at += chunk) {
      std::vector<StepEntry> entries;
      std::vector<std::pair<int, size_t>> where;  // (0: a, 1: b, -1: decode, position)
      const size_t a_end = std::min(a.size(), at + chunk), b_end = std::min(b.size(), bt + 5);
      for (size_t i = at; i < a_end; ++i) {
        entries.push_back({0, a[i], int32_t(i)});
        where.emplace_back(0, i);
        if (i == at + 1 || i + 1 == a_end) {
          entries.push_back({2, 11, pos2++});
          where.emplace_back(-1, 0);
        }
      }
      entries.insert(entries.begin(), {3, 12, pos3++});
      where.insert(where.begin(), {-1, 0});
      for (; bt < b_end; ++bt) {
        entries.push_back({1, b[bt], int32_t(bt)});
        where.emplace_back(1, bt);
      }
      const StepOut got = step(entries, ptrs);
      for (size_t e = 0; e < entries.size(); ++e) {
        const auto [which, i] = where[e];
        if (which < 0) continue;
        expect_same(got, e, which == 0 ? a_want : b_want, i,
                    std::string(which == 0 ? "a" : "b") + " in chunks of " + std::to_string(chunk) + ", position " +
                        std::to_string(i));
      }
    }
  }
}

TEST_P(BatchTest, DecodeMixedWithPrefillEqualsApart) {
  // Sequence 0 has its prompt cached and decodes one token while sequence 1 prefills.
  SequenceCache a0 = model_->new_cache(), b0 = model_->new_cache();
  step(prefill(0, kPrompts[0]), {&a0});
  const StepOut decode_alone = step({{0, 42, int32_t(kPrompts[0].size())}}, {&a0});
  const std::vector<int32_t> long_prompt = prompt(40, 7);  // past the many-token threshold
  for (const auto& p : {kPrompts[2], long_prompt}) {
    SequenceCache pb = model_->new_cache();
    const StepOut prefill_alone = step(prefill(0, p), {&pb});
    SequenceCache a1 = model_->new_cache(), b1 = model_->new_cache();
    step(prefill(0, kPrompts[0]), {&a1});
    std::vector<StepEntry> mixed = prefill(1, p);
    mixed.insert(mixed.begin() + 3, {0, 42, int32_t(kPrompts[0].size())});
    const StepOut got = step(mixed, {&a1, &b1});
    expect_same(got, 3, decode_alone, 0, "decode entry beside a prefill of " + std::to_string(p.size()));
    for (size_t i = 0; i < p.size(); ++i)
      expect_same(got, i < 3 ? i : i + 1, prefill_alone, i, "prefill position " + std::to_string(i));
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

INSTANTIATE_TEST_SUITE_P(Batch, BatchTest,
                         testing::Combine(testing::Values("v3-tiny-fp8", "v2-lite-tiny-bf16"), testing::Values(1, 2)),
                         [](const auto& info) {
                           std::string s = std::get<0>(info.param);
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s + "_threads" + std::to_string(std::get<1>(info.param));
                         });

}  // namespace
}  // namespace dsv3
