#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"

namespace dsv3 {

void SamplingParams::validate() const {
  if (!(temperature >= 0) || !std::isfinite(temperature)) fail("temperature must be >= 0, got {}", temperature);
  if (!(top_p > 0 && top_p <= 1)) fail("top_p must be in (0, 1], got {}", top_p);
  if (top_k < 0) fail("top_k must be >= 0 (0 = off), got {}", top_k);
  if (!(min_p >= 0 && min_p < 1)) fail("min_p must be in [0, 1), got {}", min_p);
}

Rng::Rng(uint64_t seed) {
  // splitmix64 expands the seed into the four state words (xoshiro's authors' recommendation).
  uint64_t z = seed;
  for (auto& s : s_) {
    z += 0x9e3779b97f4a7c15ull;
    uint64_t x = z;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    s = x ^ (x >> 31);
  }
}

uint64_t Rng::next() {
  const auto rotl = [](uint64_t x, int k) { return (x << k) | (x >> (64 - k)); };
  const uint64_t result = rotl(s_[1] * 5, 7) * 9, t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform() { return double(next() >> 11) * 0x1.0p-53; }

int32_t argmax(std::span<const float> v) {
  size_t best = 0;
  for (size_t i = 1; i < v.size(); ++i)
    if (v[i] > v[best]) best = i;
  return int32_t(best);
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) { params_.validate(); }

int32_t Sampler::sample(std::span<const float> logits) {
  DSV3_CHECK(!logits.empty(), "sample: empty logits");
  if (params_.temperature <= 0) return argmax(logits);
  const size_t n = logits.size();
  // softmax(logits / T), computed in double so tiny temperatures do not overflow.
  const float mx = logits[size_t(argmax(logits))];
  probs_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const float p = float(std::exp(double(logits[i] - mx) / params_.temperature));
    probs_[i] = p;
  }
  // min-p: relative to the most likely token, whose unnormalised probability is exactly 1.
  const float floor = params_.min_p > 0 ? params_.min_p : 0.0f;
  ids_.clear();
  for (size_t i = 0; i < n; ++i)
    if (probs_[i] > 0 && probs_[i] >= floor) ids_.push_back(int32_t(i));
  const auto by_prob = [&](int32_t a, int32_t b) { return probs_[a] != probs_[b] ? probs_[a] > probs_[b] : a < b; };
  size_t keep = ids_.size();
  if (params_.top_k > 0 && size_t(params_.top_k) < keep) {
    std::partial_sort(ids_.begin(), ids_.begin() + params_.top_k, ids_.end(), by_prob);
    keep = size_t(params_.top_k);
  } else {
    std::sort(ids_.begin(), ids_.end(), by_prob);
  }
  double kept_sum = 0;
  for (size_t i = 0; i < keep; ++i) kept_sum += probs_[ids_[i]];
  if (params_.top_p < 1) {
    // Smallest prefix whose share of the (top-k) mass reaches top_p.
    double acc = 0;
    size_t i = 0;
    while (i < keep) {
      acc += probs_[ids_[i++]];
      if (acc >= params_.top_p * kept_sum) break;
    }
    keep = i;
    kept_sum = acc;
  }
  const double r = rng_.uniform() * kept_sum;
  double acc = 0;
  for (size_t i = 0; i < keep; ++i) {
    acc += probs_[ids_[i]];
    if (r < acc) return ids_[i];
  }
  return ids_[keep - 1];
}

}  // namespace dsv3
