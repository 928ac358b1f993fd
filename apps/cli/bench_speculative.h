// The speculative part of `dsv3 bench --speculative mtp`: greedy decoding of the same prompt with
// and without MTP drafts through the Engine, alternated (plain, speculative, plain, speculative,
// ...) so that both see the same machine, and the ratio taken pair by pair.
#pragma once

#include <cstdint>
#include <vector>

#include "model/model.h"
#include "runtime/speculative.h"

namespace dsv3::cli {

struct SpeculativeBench {
  double decode_tok_s = 0;              // plain decoding (median over the rounds)
  double decode_tok_s_speculative = 0;  // with speculation (median)
  double speedup = 0;                   // median of the per-pair ratios speculative / plain
  SpeculativeStats stats;               // summed over the speculative rounds
  SpeculationCost cost;
  int rounds = 0;
  bool same_tokens = true;  // every speculative round gave the plain rounds' tokens (greedy)
};

// prompt: token ids; decode: tokens generated per round (EOS ignored); rounds: pairs.
SpeculativeBench bench_speculative(Model& model, const std::vector<int32_t>& prompt, int64_t decode, int rounds,
                                   const SpeculativeOptions& spec, CacheDtype cache_dtype);

}  // namespace dsv3::cli
