#include "weights/shard_plan.h"

#include "base/error.h"
#include "base/dtype.h"

namespace dsv3 {

Range split_range(int64_t n_units, int64_t unit, int rank, int world) {
  return Range{.begin = n_units * rank / world * unit, .end = n_units * (rank + 1) / world * unit};
}

namespace {

// Splits `n` rows in 128-row units when that gives every rank one (FP8 block scales stay
// whole), else in single rows.
Range split_rows(int64_t n, int rank, int world) {
  if (n % kFp8BlockSize == 0 && n / kFp8BlockSize >= world) return split_range(n / kFp8BlockSize, kFp8BlockSize, rank, world);
  return split_range(n, 1, rank, world);
}

void need(int64_t n, const char* field, int world) {
  if (n < world)
    fail("config.json: '{}' is {}; it cannot be split over a world size of {} (every rank needs at least one; run "
         "with at most {} ranks)",
         field, n, world, n);
}

}  // namespace

ShardPlan ShardPlan::make(const ModelConfig& c, int rank, int world) {
  if (world < 1 || rank < 0 || rank >= world) fail("rank {} of world size {} is not a valid rank", rank, world);
  ShardPlan p;
  p.rank = rank;
  p.world = world;
  need(c.num_attention_heads, "num_attention_heads", world);
  need(c.vocab_size, "vocab_size", world);
  p.heads = split_range(c.num_attention_heads, 1, rank, world);
  p.vocab = split_range(c.vocab_size, 1, rank, world);
  bool any_dense = false;
  for (int64_t il = 0; il <= c.num_hidden_layers; ++il) any_dense = any_dense || !c.is_moe_layer(il);
  if (any_dense) {
    need(c.intermediate_size, "intermediate_size", world);
    p.intermediate = split_rows(c.intermediate_size, rank, world);
  }
  if (c.n_routed_experts > 0) {
    need(c.n_routed_experts, "n_routed_experts", world);
    p.experts = split_range(c.n_routed_experts, 1, rank, world);
    const int64_t shared = c.n_shared_experts * c.moe_intermediate_size;
    if (shared > 0) {
      need(shared, "n_shared_experts * moe_intermediate_size", world);
      p.shared_inter = split_rows(shared, rank, world);
    }
  }
  return p;
}

}  // namespace dsv3
