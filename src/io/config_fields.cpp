#include "io/config_fields.h"

#include <set>

#include "base/error.h"
#include "io/compressed_tensors_config.h"

namespace dsv3 {

namespace {

// Read by ModelConfig::from_json or parse_rope_config.
const std::set<std::string> kReadFields{
    "model_type",         "vocab_size",           "hidden_size",           "intermediate_size",
    "num_hidden_layers",  "num_attention_heads",  "kv_lora_rank",          "qk_nope_head_dim",
    "qk_rope_head_dim",   "v_head_dim",           "q_lora_rank",           "num_nextn_predict_layers",
    "n_routed_experts",   "n_shared_experts",     "first_k_dense_replace", "moe_layer_freq",
    "moe_intermediate_size", "num_experts_per_tok", "n_group",              "topk_group",
    "topk_method",        "scoring_func",         "norm_topk_prob",        "routed_scaling_factor",
    "rope_theta",         "rope_scaling",         "rope_parameters",       "rms_norm_eps",
    "max_position_embeddings", "tie_word_embeddings", "bos_token_id",      "eos_token_id"};

// Known and without effect on inference: bookkeeping, training-only settings, and fields that
// MLA makes moot (num_key_value_heads; transformers 5's head_dim and qk_head_dim are derived).
const std::set<std::string> kKnownFields{
    "architectures",   "auto_map",          "_name_or_path",    "transformers_version", "torch_dtype",
    "dtype",           "use_cache",         "initializer_range", "attention_dropout",   "aux_loss_alpha",
    "seq_aux",         "ep_size",           "pretraining_tp",   "num_key_value_heads",  "pad_token_id",
    "head_dim",        "qk_head_dim",       "output_router_logits", "router_aux_loss_coef", "_attn_implementation",
    "is_decoder",      "return_dict",       "output_attentions", "output_hidden_states", "torchscript",
    "id2label",        "label2id",          "tokenizer_class",  "prefix",               "task_specific_params"};

std::string dump(const nlohmann::json& v) { return v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

// `field` must be absent, null, or equal to `want`.
void require_value(const nlohmann::json& config, const std::string& source, const char* field,
                   const nlohmann::json& want, const char* why) {
  const auto it = config.find(field);
  if (it == config.end() || it->is_null() || *it == want) return;
  fail("{}: '{}' is {}; dsv3 implements only {} ({})", source, field, dump(*it), dump(want), why);
}

void check_quantization(const nlohmann::json& q, const std::string& source) {
  const std::string where = source + ": quantization_config";
  if (!q.is_object()) fail("{} must be an object, got {}", where, dump(q));
  const auto method = q.find("quant_method");
  if (method == q.end() || !method->is_string())
    fail("{}: 'quant_method' is {}; dsv3 reads 'fp8' (128x128 block scales, DeepSeek's format), "
         "'compressed-tensors' (pack-quantized) or unquantised weights",
         where, method == q.end() ? "missing" : dump(*method));
  if (*method == "compressed-tensors") {
    parse_compressed_tensors_config(q, where);
    return;
  }
  if (*method != "fp8")
    fail("{}.quant_method is {}; dsv3 reads 'fp8' with 128x128 block scales (DeepSeek's format), "
         "'compressed-tensors' in pack-quantized format (int4/int8 weights), or BF16/F16/F32 weights",
         where, dump(*method));
  static const std::set<std::string> kKeys{"quant_method",          "fmt",    "activation_scheme",
                                           "weight_block_size",     "scale_fmt", "modules_to_not_convert",
                                           "ignored_layers"};
  for (const auto& [key, v] : q.items())
    if (!kKeys.count(key) && !v.is_null())
      fail("{}.{} is {}; dsv3 does not know this FP8 setting", where, key, dump(v));
  auto require = [&](const char* key, const nlohmann::json& want, const char* why) {
    const auto it = q.find(key);
    if (it != q.end() && !it->is_null() && *it != want)
      fail("{}.{} is {}; dsv3 implements only {} ({})", where, key, dump(*it), dump(want), why);
  };
  require("fmt", "e4m3", "float8_e4m3fn weights");
  require("activation_scheme", "dynamic", "activations are not quantised with stored scales");
  // V3.1 marks its power-of-two scales; they are still stored as float32 weight_scale_inv.
  require("scale_fmt", "ue8m0", "power-of-two block scales stored as float32");
  const auto block = q.find("weight_block_size");
  if (block == q.end() || block->is_null())
    fail("{}: FP8 without 'weight_block_size' (per-tensor or per-channel scales) is not supported; dsv3 reads "
         "128x128 block scales",
         where);
  require("weight_block_size", nlohmann::json::array({128, 128}), "DeepSeek's 128x128 blocks");
}

}  // namespace

std::vector<std::string> check_config_fields(const nlohmann::json& config, const std::string& source) {
  require_value(config, source, "hidden_act", "silu", "SwiGLU experts and MLPs");
  require_value(config, source, "attention_bias", false, "MLA projections without bias");
  require_value(config, source, "mlp_bias", false, "MLP projections without bias");
  // transformers 5: true means the checkpoint keeps DeepSeek's interleaved rope dimensions.
  require_value(config, source, "rope_interleave", true, "DeepSeek's interleaved rope pairs");
  require_value(config, source, "partial_rotary_factor", 1.0, "rope over all qk_rope_head_dim dimensions");
  require_value(config, source, "sliding_window", nullptr, "full attention");
  require_value(config, source, "use_sliding_window", false, "full attention");
  require_value(config, source, "qk_layernorm", false, "no q/k norms beyond MLA's latent norms");
  require_value(config, source, "use_qk_norm", false, "no q/k norms beyond MLA's latent norms");
  if (const auto it = config.find("quantization_config"); it != config.end() && !it->is_null())
    check_quantization(*it, source);

  static const std::set<std::string> kChecked{"hidden_act",   "attention_bias", "mlp_bias",
                                              "rope_interleave", "partial_rotary_factor", "sliding_window",
                                              "use_sliding_window", "qk_layernorm", "use_qk_norm",
                                              "quantization_config"};
  std::vector<std::string> unknown;
  for (const auto& [key, v] : config.items())
    if (!kReadFields.count(key) && !kKnownFields.count(key) && !kChecked.count(key)) unknown.push_back(key);
  return unknown;
}

}  // namespace dsv3
