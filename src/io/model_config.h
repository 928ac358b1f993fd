// The fields of a Hugging Face DeepSeek-V2/V3 config.json that the math uses, under their
// config.json names, plus the values derived from them. Parsing validates every field.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/rope_config.h"

namespace dsv3 {

enum class ScoringFunc { Sigmoid, Softmax };
enum class TopkMethod { Greedy, GroupLimitedGreedy, NoauxTc };

struct ModelConfig {
  std::string model_type;  // deepseek_v2, deepseek_v3 or kimi_k2
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t moe_intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_nextn_predict_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t n_routed_experts = 0;
  int64_t n_shared_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t n_group = 1;
  int64_t topk_group = 1;
  TopkMethod topk_method = TopkMethod::Greedy;
  ScoringFunc scoring_func = ScoringFunc::Softmax;
  bool norm_topk_prob = false;
  double routed_scaling_factor = 1.0;
  int64_t first_k_dense_replace = 0;
  int64_t moe_layer_freq = 1;
  int64_t q_lora_rank = 0;  // 0: no q LoRA (config null), q_proj instead of q_a/q_b
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;
  // From rope_theta + rope_scaling (transformers 4) or rope_parameters (transformers 5).
  double rope_theta = 10000.0;
  std::optional<YarnScaling> rope_scaling;  // only YaRN is supported
  double rms_norm_eps = 1e-6;
  int64_t max_position_embeddings = 4096;
  int64_t bos_token_id = -1;
  std::vector<int64_t> eos_token_ids;
  bool tie_word_embeddings = false;
  // Fields of the file that dsv3 neither reads nor knows to be irrelevant (front ends list them).
  std::vector<std::string> unread_fields;

  // Throws Error naming `source` and the field on a missing, mistyped or inconsistent field.
  static ModelConfig from_json(const nlohmann::json& j, const std::string& source = "config.json");

  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  // Layer il (0 .. num_hidden_layers, the last being MTP) has a MoE FFN rather than a dense MLP.
  bool is_moe_layer(int64_t il) const {
    return n_routed_experts > 0 && il >= first_k_dense_replace && il % moe_layer_freq == 0;
  }
  bool has_mtp() const { return num_nextn_predict_layers > 0; }
  // qk_head_dim^-0.5, times (0.1 * mscale_all_dim * ln(factor) + 1)^2 under YaRN (model.py MLA).
  double softmax_scale() const;
  // Float32 YaRN-corrected rotation frequency of each adjacent pair (model.py precompute_freqs_cis).
  std::vector<float> rope_inv_freq() const;
};

const char* to_string(ScoringFunc f);
const char* to_string(TopkMethod m);

}  // namespace dsv3
