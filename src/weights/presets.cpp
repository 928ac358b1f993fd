#include "weights/presets.h"

#include "base/error.h"

namespace dsv3 {

namespace {

using Json = nlohmann::ordered_json;

// The fields every DeepSeek config.json carries beside the shape (HF DeepseekV3Config).
Json base_config(const Json& shape) {
  const bool v2 = shape.value("scoring_func", "sigmoid") == "softmax";
  Json c = {{"architectures", {v2 ? "DeepseekV2ForCausalLM" : "DeepseekV3ForCausalLM"}},
            {"model_type", v2 ? "deepseek_v2" : "deepseek_v3"},
            {"attention_bias", false},
            {"attention_dropout", 0.0},
            {"bos_token_id", 0},
            {"eos_token_id", 1},
            {"hidden_act", "silu"},
            {"initializer_range", 0.02},
            {"max_position_embeddings", 163840},
            {"num_key_value_heads", shape.at("num_attention_heads")},
            {"rms_norm_eps", 1e-6},
            {"rope_theta", 10000},
            {"tie_word_embeddings", false},
            {"torch_dtype", "bfloat16"},
            {"use_cache", true}};
  for (const auto& [k, v] : shape.items()) c[k] = v;
  return c;
}

Json yarn(double mscale) {
  return {{"beta_fast", 32},      {"beta_slow", 1},     {"factor", 40}, {"mscale", mscale}, {"mscale_all_dim", mscale},
          {"original_max_position_embeddings", 4096}, {"type", "yarn"}};
}

Json v3_routing(int experts, int shared, int per_tok, int groups, int topk_groups) {
  return {{"n_routed_experts", experts}, {"n_shared_experts", shared}, {"num_experts_per_tok", per_tok},
          {"n_group", groups},           {"topk_group", topk_groups},  {"first_k_dense_replace", 1},
          {"moe_layer_freq", 1},         {"routed_scaling_factor", 2.5}, {"scoring_func", "sigmoid"},
          {"topk_method", "noaux_tc"},   {"norm_topk_prob", true}};
}

}  // namespace

std::vector<std::string> preset_names() { return {"v3-tiny", "v2-lite-tiny", "default-small", "bench-m"}; }

Json preset_config(const std::string& name) {
  Json s;
  if (name == "v3-tiny") {
    s = {{"vocab_size", 1024},       {"hidden_size", 192},       {"intermediate_size", 320},
         {"moe_intermediate_size", 64}, {"num_hidden_layers", 3}, {"num_nextn_predict_layers", 1},
         {"num_attention_heads", 4}};
    s.update(v3_routing(16, 1, 4, 4, 2));
    s.update(Json{{"q_lora_rank", 96}, {"kv_lora_rank", 64}, {"qk_nope_head_dim", 32}, {"qk_rope_head_dim", 16},
                  {"v_head_dim", 32}, {"rope_scaling", yarn(1.0)}});
  } else if (name == "v2-lite-tiny") {
    s = {{"vocab_size", 1024},          {"hidden_size", 256},        {"intermediate_size", 384},
         {"moe_intermediate_size", 96}, {"num_hidden_layers", 3},    {"num_nextn_predict_layers", 0},
         {"num_attention_heads", 4},    {"n_routed_experts", 8},     {"n_shared_experts", 2},
         {"num_experts_per_tok", 3},    {"n_group", 1},              {"topk_group", 1},
         {"first_k_dense_replace", 1},  {"moe_layer_freq", 1},       {"routed_scaling_factor", 1.0},
         {"scoring_func", "softmax"},   {"topk_method", "greedy"},   {"norm_topk_prob", false},
         {"q_lora_rank", nullptr},      {"kv_lora_rank", 64},        {"qk_nope_head_dim", 32},
         {"qk_rope_head_dim", 16},      {"v_head_dim", 32},          {"rope_scaling", yarn(0.707)}};
  } else if (name == "default-small") {
    // The out-of-the-box model (scripts/setup.sh makes models/default from it): V3's
    // architecture and its real 129280-token vocabulary at a size that initialises in seconds
    // (~150 MB, mostly the embedding and the head). No MTP layer: it would double that.
    s = {{"vocab_size", 129280},         {"hidden_size", 256},      {"intermediate_size", 512},
         {"moe_intermediate_size", 128}, {"num_hidden_layers", 3},  {"num_nextn_predict_layers", 0},
         {"num_attention_heads", 8}};
    s.update(v3_routing(16, 1, 4, 4, 2));
    s.update(Json{{"q_lora_rank", 192}, {"kv_lora_rank", 64}, {"qk_nope_head_dim", 32}, {"qk_rope_head_dim", 16},
                  {"v_head_dim", 32}, {"rope_scaling", yarn(1.0)}});
  } else if (name == "bench-m") {
    s = {{"vocab_size", 129280},          {"hidden_size", 2048},    {"intermediate_size", 10944},
         {"moe_intermediate_size", 1408}, {"num_hidden_layers", 4}, {"num_nextn_predict_layers", 1},
         {"num_attention_heads", 16}};
    s.update(v3_routing(64, 1, 6, 8, 4));
    s.update(Json{{"q_lora_rank", 512}, {"kv_lora_rank", 512}, {"qk_nope_head_dim", 128}, {"qk_rope_head_dim", 64},
                  {"v_head_dim", 128}, {"rope_scaling", yarn(1.0)}});
  } else {
    std::string names;
    for (const auto& n : preset_names()) names += (names.empty() ? "" : ", ") + n;
    fail("--preset: unknown preset '{}'; have {}", name, names);
  }
  return base_config(s);
}

}  // namespace dsv3
