#include "io/model_config.h"

#include <cmath>
#include <numbers>

#include "base/error.h"
#include "io/config_fields.h"
#include "io/json_get.h"
#include "io/model_config_ranges.h"

namespace dsv3 {

namespace {

class Fields {
 public:
  Fields(const nlohmann::json& j, const std::string& source) : j_(j), source_(source) {}

  const nlohmann::json* get(const char* name) const {
    const auto it = j_.find(name);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }
  int64_t integer(const char* name) const {
    const auto* v = get(name);
    if (!v) fail("{}: missing field '{}'", source_, name);
    return as_integer(name, *v);
  }
  int64_t integer(const char* name, int64_t dflt) const {
    const auto* v = get(name);
    return v ? as_integer(name, *v) : dflt;
  }
  double number(const char* name, double dflt) const {
    const auto* v = get(name);
    return v ? json_as_number(*v, fmt::format("{}: field '{}'", source_, name)) : dflt;
  }
  bool boolean(const char* name, bool dflt) const {
    const auto* v = get(name);
    if (!v) return dflt;
    if (!v->is_boolean()) fail("{}: field '{}' must be true or false, got {}", source_, name, v->dump());
    return v->get<bool>();
  }
  std::string string(const char* name, const std::string& dflt) const {
    const auto* v = get(name);
    if (!v) return dflt;
    if (!v->is_string()) fail("{}: field '{}' must be a string, got {}", source_, name, v->dump());
    return v->get<std::string>();
  }
  // Range-checked on the double: 1e300 must not reach an undefined int64_t conversion.
  int64_t as_integer(const char* name, const nlohmann::json& v) const {
    return json_as_integer(v, fmt::format("{}: field '{}'", source_, name));
  }
  const std::string& source() const { return source_; }

 private:
  const nlohmann::json& j_;
  // A copy: callers pass temporaries (source + " rope_scaling"), which a reference would outlive.
  const std::string source_;
};

void require_positive(const std::string& source, const char* name, int64_t v) {
  if (v <= 0) fail("{}: '{}' is {}; it must be positive", source, name, v);
}

}  // namespace

const char* to_string(ScoringFunc f) { return f == ScoringFunc::Sigmoid ? "sigmoid" : "softmax"; }
const char* to_string(TopkMethod m) {
  switch (m) {
    case TopkMethod::Greedy: return "greedy";
    case TopkMethod::GroupLimitedGreedy: return "group_limited_greedy";
    case TopkMethod::NoauxTc: return "noaux_tc";
  }
  return "?";
}

ModelConfig ModelConfig::from_json(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object()) fail("{}: not a JSON object", source);
  const Fields f(j, source);
  ModelConfig c;
  if (!f.get("model_type")) fail("{}: missing field 'model_type'", source);
  c.model_type = f.string("model_type", "");
  const bool v3 = c.model_type == "deepseek_v3" || c.model_type == "kimi_k2";
  if (!v3 && c.model_type != "deepseek_v2")
    fail("{}: model_type '{}' is not supported; dsv3 runs deepseek_v2, deepseek_v3 and kimi_k2", source,
         c.model_type);

  c.vocab_size = f.integer("vocab_size");
  c.hidden_size = f.integer("hidden_size");
  c.intermediate_size = f.integer("intermediate_size");
  c.num_hidden_layers = f.integer("num_hidden_layers");
  c.num_attention_heads = f.integer("num_attention_heads");
  c.kv_lora_rank = f.integer("kv_lora_rank");
  c.qk_nope_head_dim = f.integer("qk_nope_head_dim");
  c.qk_rope_head_dim = f.integer("qk_rope_head_dim");
  c.v_head_dim = f.integer("v_head_dim");
  c.q_lora_rank = f.integer("q_lora_rank", 0);
  c.num_nextn_predict_layers = f.integer("num_nextn_predict_layers", 0);
  c.n_routed_experts = f.integer("n_routed_experts", 0);
  c.n_shared_experts = f.integer("n_shared_experts", 0);
  c.first_k_dense_replace = f.integer("first_k_dense_replace", 0);
  c.moe_layer_freq = f.integer("moe_layer_freq", 1);
  if (c.n_routed_experts > 0) {
    c.moe_intermediate_size = f.integer("moe_intermediate_size");
    c.num_experts_per_tok = f.integer("num_experts_per_tok");
  }
  c.n_group = f.integer("n_group", 1);
  c.topk_group = f.integer("topk_group", c.n_group);
  // HF defaults: DeepseekV3Config noaux_tc + sigmoid, DeepseekV2Config greedy + softmax.
  const std::string topk = f.string("topk_method", v3 ? "noaux_tc" : "greedy");
  if (topk == "greedy")
    c.topk_method = TopkMethod::Greedy;
  else if (topk == "group_limited_greedy")
    c.topk_method = TopkMethod::GroupLimitedGreedy;
  else if (topk == "noaux_tc")
    c.topk_method = TopkMethod::NoauxTc;
  else
    fail("{}: topk_method '{}' is not supported (greedy, group_limited_greedy, noaux_tc)", source, topk);
  const std::string scoring = f.string("scoring_func", v3 ? "sigmoid" : "softmax");
  if (scoring == "sigmoid")
    c.scoring_func = ScoringFunc::Sigmoid;
  else if (scoring == "softmax")
    c.scoring_func = ScoringFunc::Softmax;
  else
    fail("{}: scoring_func '{}' is not supported (sigmoid, softmax)", source, scoring);
  c.norm_topk_prob = f.boolean("norm_topk_prob", false);
  c.routed_scaling_factor = f.number("routed_scaling_factor", 1.0);
  c.rms_norm_eps = f.number("rms_norm_eps", 1e-6);
  c.max_position_embeddings = f.integer("max_position_embeddings", 4096);
  c.tie_word_embeddings = f.boolean("tie_word_embeddings", false);
  c.bos_token_id = f.integer("bos_token_id", -1);
  if (const auto* eos = f.get("eos_token_id")) {
    if (eos->is_array()) {
      for (const auto& e : *eos) c.eos_token_ids.push_back(f.as_integer("eos_token_id", e));
    } else {
      c.eos_token_ids.push_back(f.as_integer("eos_token_id", *eos));
    }
  }

  const RopeConfig rope = parse_rope_config(j, source);
  c.rope_theta = rope.rope_theta;
  c.rope_scaling = rope.yarn;
  c.unread_fields = check_config_fields(j, source);

  for (auto [name, v] : {std::pair{"vocab_size", c.vocab_size}, {"hidden_size", c.hidden_size},
                         {"intermediate_size", c.intermediate_size}, {"num_hidden_layers", c.num_hidden_layers},
                         {"num_attention_heads", c.num_attention_heads}, {"kv_lora_rank", c.kv_lora_rank},
                         {"qk_nope_head_dim", c.qk_nope_head_dim}, {"qk_rope_head_dim", c.qk_rope_head_dim},
                         {"v_head_dim", c.v_head_dim}, {"moe_layer_freq", c.moe_layer_freq}})
    require_positive(source, name, v);
  if (c.qk_rope_head_dim % 2) fail("{}: 'qk_rope_head_dim' is {}; rope needs an even size", source, c.qk_rope_head_dim);
  if (c.q_lora_rank < 0) fail("{}: 'q_lora_rank' is {}; it must be positive or null", source, c.q_lora_rank);
  if (c.num_nextn_predict_layers < 0 || c.num_nextn_predict_layers > 1)
    fail("{}: 'num_nextn_predict_layers' is {}; dsv3 supports 0 or 1", source, c.num_nextn_predict_layers);
  if (c.n_routed_experts > 0) {
    require_positive(source, "moe_intermediate_size", c.moe_intermediate_size);
    require_positive(source, "num_experts_per_tok", c.num_experts_per_tok);
    require_positive(source, "n_group", c.n_group);
    if (c.num_experts_per_tok > c.n_routed_experts)
      fail("{}: 'num_experts_per_tok' ({}) exceeds 'n_routed_experts' ({})", source, c.num_experts_per_tok,
           c.n_routed_experts);
    if (c.n_routed_experts % c.n_group)
      fail("{}: 'n_routed_experts' ({}) is not a multiple of 'n_group' ({})", source, c.n_routed_experts, c.n_group);
    if (c.topk_group < 1 || c.topk_group > c.n_group)
      fail("{}: 'topk_group' ({}) must be between 1 and 'n_group' ({})", source, c.topk_group, c.n_group);
    const int64_t per_group = c.n_routed_experts / c.n_group;
    if (c.n_group > 1 && c.topk_method != TopkMethod::Greedy && c.topk_group * per_group < c.num_experts_per_tok)
      fail("{}: topk_group {} groups of {} experts hold fewer than num_experts_per_tok ({})", source, c.topk_group,
           per_group, c.num_experts_per_tok);
    if (c.topk_method == TopkMethod::NoauxTc && c.n_group > 1 && per_group < 2)
      fail("{}: noaux_tc scores a group by its top-2 experts; groups of {} are too small", source, per_group);
  }
  if (c.n_shared_experts < 0) fail("{}: 'n_shared_experts' is {}; it must be >= 0", source, c.n_shared_experts);
  if (c.rms_norm_eps <= 0) fail("{}: 'rms_norm_eps' must be positive, got {}", source, c.rms_norm_eps);
  check_model_config_ranges(c, source);
  return c;
}

double ModelConfig::softmax_scale() const {
  double s = 1.0 / std::sqrt(double(qk_head_dim()));
  if (rope_scaling && rope_scaling->mscale_all_dim > 0 && rope_scaling->factor > 1) {
    const double m = 0.1 * rope_scaling->mscale_all_dim * std::log(rope_scaling->factor) + 1.0;
    s *= m * m;
  }
  return s;
}

std::vector<float> ModelConfig::rope_inv_freq() const {
  const int64_t dim = qk_rope_head_dim, half = dim / 2;
  std::vector<float> freqs(size_t(half), 0.0f);
  for (int64_t i = 0; i < half; ++i)
    freqs[size_t(i)] = float(1.0 / std::pow(rope_theta, double(2 * i) / double(dim)));
  if (!rope_scaling) return freqs;
  const YarnScaling& y = *rope_scaling;
  const double pi = std::numbers::pi;
  auto correction_dim = [&](double rotations) {
    return double(dim) * std::log(double(y.original_max_position_embeddings) / (rotations * 2 * pi)) /
           (2 * std::log(rope_theta));
  };
  const double low = std::max(std::floor(correction_dim(y.beta_fast)), 0.0);
  double high = std::min(std::ceil(correction_dim(y.beta_slow)), double(dim - 1));
  if (low == high) high += 0.001;
  for (int64_t i = 0; i < half; ++i) {
    const float ramp = std::clamp(float((float(i) - low) / (high - low)), 0.0f, 1.0f);
    const float smooth = 1.0f - ramp;
    const float f = freqs[size_t(i)];
    freqs[size_t(i)] = f / float(y.factor) * (1.0f - smooth) + f * smooth;
  }
  return freqs;
}

}  // namespace dsv3
