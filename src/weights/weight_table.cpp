#include "weights/weight_table.h"

#include <fmt/format.h>

namespace dsv3 {

std::string layer_prefix(int64_t il) { return fmt::format("model.layers.{}.", il); }

namespace {

void add_mlp(std::vector<WeightSpec>& out, const std::string& p, int64_t hidden, int64_t inter) {
  out.push_back({p + "gate_proj.weight", {inter, hidden}, WeightRole::Linear});
  out.push_back({p + "up_proj.weight", {inter, hidden}, WeightRole::Linear});
  out.push_back({p + "down_proj.weight", {hidden, inter}, WeightRole::Linear});
}

}  // namespace

std::vector<WeightSpec> global_weight_specs(const ModelConfig& c) {
  std::vector<WeightSpec> out;
  out.push_back({"model.embed_tokens.weight", {c.vocab_size, c.hidden_size}, WeightRole::Embedding});
  out.push_back({"model.norm.weight", {c.hidden_size}, WeightRole::Norm});
  if (!c.tie_word_embeddings) out.push_back({"lm_head.weight", {c.vocab_size, c.hidden_size}, WeightRole::Linear});
  return out;
}

std::vector<WeightSpec> layer_weight_specs(const ModelConfig& c, int64_t il) {
  const std::string p = layer_prefix(il);
  const int64_t h = c.hidden_size, nh = c.num_attention_heads;
  std::vector<WeightSpec> out;
  out.push_back({p + "input_layernorm.weight", {h}, WeightRole::Norm});
  out.push_back({p + "post_attention_layernorm.weight", {h}, WeightRole::Norm});
  const std::string a = p + "self_attn.";
  if (c.q_lora_rank > 0) {
    out.push_back({a + "q_a_proj.weight", {c.q_lora_rank, h}, WeightRole::Linear});
    out.push_back({a + "q_a_layernorm.weight", {c.q_lora_rank}, WeightRole::Norm});
    out.push_back({a + "q_b_proj.weight", {nh * c.qk_head_dim(), c.q_lora_rank}, WeightRole::Linear});
  } else {
    out.push_back({a + "q_proj.weight", {nh * c.qk_head_dim(), h}, WeightRole::Linear});
  }
  out.push_back({a + "kv_a_proj_with_mqa.weight", {c.kv_lora_rank + c.qk_rope_head_dim, h}, WeightRole::Linear});
  out.push_back({a + "kv_a_layernorm.weight", {c.kv_lora_rank}, WeightRole::Norm});
  out.push_back(
      {a + "kv_b_proj.weight", {nh * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank}, WeightRole::Linear});
  out.push_back({a + "o_proj.weight", {h, nh * c.v_head_dim}, WeightRole::Linear});
  const std::string m = p + "mlp.";
  if (c.is_moe_layer(il)) {
    out.push_back({m + "gate.weight", {c.n_routed_experts, h}, WeightRole::Router});
    if (c.topk_method == TopkMethod::NoauxTc)
      out.push_back({m + "gate.e_score_correction_bias", {c.n_routed_experts}, WeightRole::Bias});
    for (int64_t e = 0; e < c.n_routed_experts; ++e)
      add_mlp(out, fmt::format("{}experts.{}.", m, e), h, c.moe_intermediate_size);
    if (c.n_shared_experts > 0) add_mlp(out, m + "shared_experts.", h, c.n_shared_experts * c.moe_intermediate_size);
  } else {
    add_mlp(out, m, h, c.intermediate_size);
  }
  if (il == c.num_hidden_layers) {  // MTP extras (DeepSeek-V3 checkpoint layout)
    out.push_back({p + "embed_tokens.weight", {c.vocab_size, h}, WeightRole::Embedding});
    out.push_back({p + "enorm.weight", {h}, WeightRole::Norm});
    out.push_back({p + "hnorm.weight", {h}, WeightRole::Norm});
    out.push_back({p + "eh_proj.weight", {h, 2 * h}, WeightRole::Linear});
    out.push_back({p + "shared_head.norm.weight", {h}, WeightRole::Norm});
    out.push_back({p + "shared_head.head.weight", {c.vocab_size, h}, WeightRole::Linear});
  }
  return out;
}

}  // namespace dsv3
