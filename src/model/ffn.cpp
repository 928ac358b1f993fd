// The feed-forward half of a block: a dense SwiGLU MLP in the first first_k_dense_replace
// layers, DeepSeekMoE (routed + shared experts) after.
#include "model/model.h"
#include "model/scratch.h"

namespace dsv3 {

void Model::ffn(const LayerWeights& lw, int64_t il, const float* h, float* out, int64_t n, RoutingTrace* trace) {
  if (!lw.is_moe) {
    backend_.mlp(lw.mlp, h, n, out);  // this rank's intermediate columns
    comm_.all_reduce_sum(out, n * config_.hidden_size);
    return;
  }
  const int64_t E = config_.n_routed_experts, K = config_.num_experts_per_tok;
  float* logits = grow(gate_logits_, n * E);
  backend_.linear(lw.moe.gate, h, n, logits);
  RouteShape rs = route_shape_;
  rs.e_score_correction_bias = lw.moe.e_score_correction_bias.present() ? &lw.moe.e_score_correction_bias : nullptr;
  int32_t* experts = grow(route_e_, n * K);
  float* weights = grow(route_w_, n * K);
  backend_.moe_route(rs, logits, n, experts, weights);
  if (trace) trace->calls.push_back({il, {experts, experts + n * K}, {weights, weights + n * K}});
  // This rank's routed experts plus its part of the shared experts, then one all-reduce of the
  // sum (model.py MoE.forward all-reduces y, and the shared MLP's RowParallelLinear w2 reduces z
  // inside: two reductions of what one sum carries).
  backend_.moe(lw.moe, h, n, experts, weights, K, out);
  comm_.all_reduce_sum(out, n * config_.hidden_size);
}

}  // namespace dsv3
