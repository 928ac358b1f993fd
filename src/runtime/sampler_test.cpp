#include "runtime/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <algorithm>
#include <set>

#include "base/error.h"

namespace dsv3 {
namespace {

std::vector<float> logits_of(std::vector<double> probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(float(std::log(p)));
  return l;
}

TEST(Sampler, TemperatureZeroIsArgmax) {
  Sampler s({.temperature = 0});
  const std::vector<float> l{0.1f, 3.0f, -1.0f, 2.9f};
  for (int i = 0; i < 10; ++i) EXPECT_EQ(s.sample(l), 1);
}

TEST(Sampler, SameSeedSameDraws) {
  const std::vector<float> l = logits_of({0.1, 0.2, 0.3, 0.15, 0.25});
  Sampler a({.temperature = 1, .top_p = 1, .seed = 42}), b({.temperature = 1, .top_p = 1, .seed = 42}),
      c({.temperature = 1, .top_p = 1, .seed = 43});
  std::vector<int32_t> da, db, dc;
  for (int i = 0; i < 200; ++i) {
    da.push_back(a.sample(l));
    db.push_back(b.sample(l));
    dc.push_back(c.sample(l));
  }
  EXPECT_EQ(da, db);
  EXPECT_NE(da, dc);
}

TEST(Sampler, FrequenciesFollowTheDistribution) {
  const std::vector<double> p{0.1, 0.2, 0.3, 0.15, 0.25};
  Sampler s({.temperature = 1, .top_p = 1, .seed = 7});
  std::map<int32_t, int> count;
  const int n = 20000;
  for (int i = 0; i < n; ++i) ++count[s.sample(logits_of(p))];
  for (size_t i = 0; i < p.size(); ++i) EXPECT_NEAR(double(count[int32_t(i)]) / n, p[i], 0.015) << i;
}

std::set<int32_t> support(const SamplingParams& params, const std::vector<float>& l) {
  Sampler s(params);
  std::set<int32_t> seen;
  for (int i = 0; i < 3000; ++i) seen.insert(s.sample(l));
  return seen;
}

TEST(Sampler, TopKTopPMinPCutTheTail) {
  const std::vector<float> l = logits_of({0.05, 0.4, 0.3, 0.15, 0.1});
  EXPECT_EQ(support({.temperature = 1, .top_p = 1, .top_k = 2}, l), (std::set<int32_t>{1, 2}));
  // 0.4 + 0.3 = 0.7 < 0.75 <= 0.85: the nucleus is {1, 2, 3}.
  EXPECT_EQ(support({.temperature = 1, .top_p = 0.75f}, l), (std::set<int32_t>{1, 2, 3}));
  // min_p 0.3: keep p >= 0.12.
  EXPECT_EQ(support({.temperature = 1, .top_p = 1, .min_p = 0.3f}, l), (std::set<int32_t>{1, 2, 3}));
  EXPECT_EQ(support({.temperature = 1, .top_p = 1, .top_k = 1}, l), (std::set<int32_t>{1}));
}

TEST(Sampler, NucleusOfALargeVocabularyMatchesASortedReference) {
  // 5000 ids: large enough for the quickselect path (the sorted reference is the definition).
  Rng rng(3);
  std::vector<float> l(5000);
  for (auto& x : l) x = float(rng.uniform() * 6);
  for (float top_p : {0.05f, 0.5f, 0.9f}) {
    std::vector<std::pair<double, int32_t>> sorted;
    double total = 0;
    const float mx = *std::max_element(l.begin(), l.end());
    for (size_t i = 0; i < l.size(); ++i) {
      const double p = std::exp(double(l[i] - mx));
      sorted.push_back({-p, int32_t(i)});
      total += p;
    }
    std::sort(sorted.begin(), sorted.end());
    std::set<int32_t> want;
    double acc = 0;
    for (const auto& [np, id] : sorted) {
      if (acc >= top_p * total) break;
      acc += -np;
      want.insert(id);
    }
    Sampler s({.temperature = 1, .top_p = top_p, .seed = 9});
    std::set<int32_t> seen;
    for (int i = 0; i < 4000; ++i) seen.insert(s.sample(l));
    for (int32_t id : seen) EXPECT_TRUE(want.count(id)) << "top_p " << top_p << ": id " << id << " is outside the nucleus";
    EXPECT_GT(seen.size(), want.size() / 2) << top_p;
  }
}

TEST(Sampler, LowTemperatureSharpens) {
  const std::vector<float> l = logits_of({0.3, 0.35, 0.35 - 1e-3});
  Sampler s({.temperature = 1e-4f, .top_p = 1, .seed = 1});
  for (int i = 0; i < 100; ++i) EXPECT_EQ(s.sample(l), 1);
}

TEST(Sampler, RejectsBadParameters) {
  EXPECT_THROW(Sampler({.temperature = -1}), Error);
  EXPECT_THROW(Sampler({.top_p = 0}), Error);
  EXPECT_THROW(Sampler({.top_p = 1.5f}), Error);
  EXPECT_THROW(Sampler({.top_k = -3}), Error);
  EXPECT_THROW(Sampler({.min_p = 1}), Error);
}

}  // namespace
}  // namespace dsv3
