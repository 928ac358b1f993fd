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

// The nucleus: the shortest most-likely-first prefix of cand_[0, n) holding `target` mass.
// A quickselect on mass (expected O(n)) rather than a sort: near-flat distributions (random
// weights, high temperatures) would otherwise sort the whole vocabulary every token. Leaves
// the nucleus in cand_[0, result) (in a deterministic order) and its mass in `mass`.
size_t Sampler::nucleus(size_t n, double target, double& mass) {
  const auto before = [](const Candidate& a, const Candidate& b) { return a.p != b.p ? a.p > b.p : a.id < b.id; };
  size_t lo = 0, hi = n;  // [0, lo) is in the nucleus with mass acc; its end lies in [lo, hi]
  double acc = 0;
  while (hi - lo > 64) {
    // Median of three by position; `before` is a strict total order (ties broken by id).
    Candidate a = cand_[lo], b = cand_[lo + (hi - lo) / 2], c = cand_[hi - 1];
    if (before(b, a)) std::swap(a, b);
    if (before(c, b)) std::swap(b, c);
    if (before(b, a)) std::swap(a, b);
    const Candidate pivot = b;
    const auto mid = std::partition(cand_.begin() + long(lo), cand_.begin() + long(hi),
                                     [&](const Candidate& x) { return before(x, pivot); });
    const size_t k = size_t(mid - cand_.begin());
    double upper = 0;
    for (size_t i = lo; i < k; ++i) upper += cand_[i].p;
    // Put the pivot right after the candidates more likely than it.
    for (size_t i = k; i < hi; ++i)
      if (cand_[i].id == pivot.id) {
        std::swap(cand_[i], cand_[k]);
        break;
      }
    if (acc + upper >= target) {
      hi = k;
    } else if (acc + upper + pivot.p >= target) {
      mass = acc + upper + pivot.p;
      return k + 1;
    } else {
      acc += upper + pivot.p;
      lo = k + 1;
    }
  }
  std::sort(cand_.begin() + long(lo), cand_.begin() + long(hi), before);
  size_t j = lo;
  while (j < hi && acc < target) acc += cand_[j++].p;
  mass = acc;
  return std::max(j, size_t(1));
}

size_t Sampler::keep(std::span<const float> logits, double& mass) {
  const size_t n = logits.size();
  // Unnormalised softmax(logits / T): the most likely token gets exactly 1, so min-p compares
  // with min_p directly.
  const float mx = logits[size_t(argmax(logits))], inv_t = 1.0f / params_.temperature;
  const float floor = params_.min_p;
  cand_.clear();
  for (size_t i = 0; i < n; ++i) {
    const float p = std::exp((logits[i] - mx) * inv_t);
    if (p > 0 && p >= floor) cand_.push_back({p, int32_t(i)});
  }
  // Most likely first, ties by id: the order, and so the draw, depend only on the logits.
  const auto before = [](const Candidate& a, const Candidate& b) { return a.p != b.p ? a.p > b.p : a.id < b.id; };
  size_t keep = cand_.size();
  if (params_.top_k > 0 && size_t(params_.top_k) < keep) {
    keep = size_t(params_.top_k);
    std::partial_sort(cand_.begin(), cand_.begin() + long(keep), cand_.end(), before);
  }
  double kept_sum = 0;
  for (size_t i = 0; i < keep; ++i) kept_sum += cand_[i].p;
  if (params_.top_p < 1) keep = nucleus(keep, params_.top_p * kept_sum, kept_sum);
  mass = kept_sum;
  return keep;
}

int32_t Sampler::sample(std::span<const float> logits) {
  DSV3_CHECK(!logits.empty(), "sample: empty logits");
  if (params_.temperature <= 0) return argmax(logits);
  double kept_sum = 0;
  const size_t keep = this->keep(logits, kept_sum);
  const double r = rng_.uniform() * kept_sum;
  double acc = 0;
  for (size_t i = 0; i < keep; ++i) {
    acc += cand_[i].p;
    if (r < acc) return cand_[i].id;
  }
  return cand_[keep - 1].id;
}

void Sampler::distribution(std::span<const float> logits, std::vector<TokenProb>& out) {
  DSV3_CHECK(!logits.empty(), "distribution: empty logits");
  out.clear();
  if (params_.temperature <= 0) {
    out.push_back({argmax(logits), 1.0});
    return;
  }
  double mass = 0;
  const size_t keep = this->keep(logits, mass);
  for (size_t i = 0; i < keep; ++i) out.push_back({cand_[i].id, double(cand_[i].p) / mass});
}

int32_t Sampler::draw(std::span<const TokenProb> dist) {
  DSV3_CHECK(!dist.empty(), "draw: empty distribution");
  double total = 0;
  for (const auto& t : dist) total += t.p;
  const double r = rng_.uniform() * total;
  double acc = 0;
  for (const auto& t : dist) {
    acc += t.p;
    if (r < acc) return t.id;
  }
  return dist.back().id;
}

}  // namespace dsv3
