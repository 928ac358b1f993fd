// Next-token sampling: temperature, top-k, top-p (nucleus), min-p, with a seeded RNG owned by
// the request, so the same seed gives the same tokens on every machine (the RNG and the
// uniform draw are spelled out here rather than left to <random>'s distributions, whose
// output the standard does not pin down).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace dsv3 {

struct SamplingParams {
  // 0 = greedy (argmax; top-k/top-p/min-p and the seed are then irrelevant).
  // 0.6 / 0.95 follow DeepSeek's recommendation for R1 and its generation_config.json.
  float temperature = 0.6f;
  float top_p = 0.95f;  // keep the smallest set of tokens whose probability sums to >= top_p (1 = off)
  int32_t top_k = 0;    // keep the k most likely tokens (0 = off)
  float min_p = 0.0f;   // drop tokens less likely than min_p * p(most likely) (0 = off)
  uint64_t seed = 0;

  // Throws Error naming the field for values out of range.
  void validate() const;
};

// splitmix64-seeded xoshiro256**: small, fast, and the same sequence everywhere.
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t next();
  double uniform();  // [0, 1) with 53 random bits

 private:
  uint64_t s_[4];
};

// One token of a sampling distribution.
struct TokenProb {
  int32_t id = 0;
  double p = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);

  // logits [vocab] f32 (not modified). Candidates are ordered by probability, ties by id, so
  // the result depends only on the logits, the parameters and the draws so far.
  int32_t sample(std::span<const float> logits);

  // The distribution sample() draws from: the tokens temperature, top-k, top-p and min-p keep,
  // in sample()'s draw order, probabilities normalised to sum 1; temperature 0: the argmax
  // with probability 1. Draws nothing. (Speculative decoding compares these distributions.)
  void distribution(std::span<const float> logits, std::vector<TokenProb>& out);
  // One draw from a distribution (as distribution() gives: non-empty, sums to ~1).
  int32_t draw(std::span<const TokenProb> dist);
  double uniform() { return rng_.uniform(); }

  const SamplingParams& params() const { return params_; }

 private:
  // Leaves the kept candidates in cand_[0, result) in draw order and their unnormalised mass in
  // `mass` (temperature > 0).
  size_t keep(std::span<const float> logits, double& mass);
  struct Candidate {
    float p;  // unnormalised probability
    int32_t id;
  };
  size_t nucleus(size_t n, double target, double& mass);

  SamplingParams params_;
  Rng rng_;
  std::vector<Candidate> cand_;  // scratch
};

int32_t argmax(std::span<const float> v);

}  // namespace dsv3
