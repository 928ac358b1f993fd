// Which part of the model one rank of an N-rank run holds, as DeepSeek-V3's inference/model.py
// splits it (ColumnParallelLinear, RowParallelLinear, ParallelEmbedding, MoE experts by rank),
// in per-rank ranges:
//   heads          q_b_proj / q_proj / kv_b_proj rows (by head), o_proj columns   -> all-reduce
//   intermediate   dense MLP gate/up rows, down_proj columns                       -> all-reduce
//   shared_inter   shared experts' gate/up rows, down_proj columns                 -> (with MoE)
//   experts        routed experts [begin, end), contiguous; the gate is replicated -> all-reduce
//   vocab          embed_tokens rows (zero outside)  -> all-reduce; lm_head rows   -> all-gather
// Everything else (norms, q_a_proj, kv_a_proj_with_mqa, the router, eh_proj) is replicated, and
// so is the latent cache (one row per token, shared by all heads).
//
// model.py asserts that every split divides evenly; dsv3 also takes uneven splits (rank r gets
// units [r*n/N, (r+1)*n/N)): 3 heads over 2 ranks is 1 + 2. A split fails (Error naming the field
// and the world size) only when a rank would get nothing (more ranks than heads, experts, ...).
#pragma once

#include <cstdint>

#include "io/model_config.h"

namespace dsv3 {

struct Range {
  int64_t begin = 0, end = 0;
  int64_t count() const { return end - begin; }
  bool contains(int64_t i) const { return i >= begin && i < end; }
};

// Units [r*n/world, (r+1)*n/world) of n units, each `unit` long: the balanced split.
Range split_range(int64_t n_units, int64_t unit, int rank, int world);

struct ShardPlan {
  int rank = 0, world = 1;
  Range heads;         // attention heads
  Range intermediate;  // dense MLP rows (intermediate_size)
  Range shared_inter;  // shared experts' rows (n_shared_experts * moe_intermediate_size)
  Range experts;       // routed experts
  Range vocab;         // vocabulary rows of embed_tokens and lm_head

  bool sharded() const { return world > 1; }
  // Throws Error naming the config field and the world size when a rank would hold nothing.
  static ShardPlan make(const ModelConfig& c, int rank, int world);
};

}  // namespace dsv3
