#include "io/rope_config.h"

#include <cmath>
#include <set>

#include "base/error.h"

namespace dsv3 {

namespace {

// One RoPE block ("rope_scaling" or "rope_parameters") as read, before the two forms are merged.
struct RopeBlock {
  std::optional<double> rope_theta;
  std::optional<YarnScaling> yarn;  // nullopt: rope_type "default"
};

double number_at(const nlohmann::json& block, const std::string& where, const char* key, double dflt) {
  const auto it = block.find(key);
  if (it == block.end() || it->is_null()) return dflt;
  if (!it->is_number()) fail("{}.{} must be a number, got {}", where, key, it->dump());
  return it->get<double>();
}

std::string type_of(const nlohmann::json& block, const std::string& where) {
  std::string type;
  for (const char* key : {"rope_type", "type"}) {
    const auto it = block.find(key);
    if (it == block.end() || it->is_null()) continue;
    if (!it->is_string()) fail("{}.{} must be a string, got {}", where, key, it->dump());
    const std::string t = it->get<std::string>();
    if (!type.empty() && t != type) fail("{}: 'rope_type' is '{}' but 'type' is '{}'", where, type, t);
    type = t;
  }
  return type;
}

RopeBlock parse_block(const nlohmann::json& block, const std::string& where) {
  if (!block.is_object()) fail("{} must be an object or null, got {}", where, block.dump());
  for (const auto& [key, v] : block.items())
    if (v.is_object())
      fail("{}.{}: per-layer-type RoPE settings (an object per attention type) are not supported; DeepSeek "
           "models have one RoPE for every layer",
           where, key);
  RopeBlock b;
  if (block.contains("rope_theta") && !block["rope_theta"].is_null())
    b.rope_theta = number_at(block, where, "rope_theta", 0.0);
  const std::string type = type_of(block, where);
  // "default" is transformers 5's name for plain RoPE; transformers 4 wrote no block at all.
  static const std::set<std::string> kPlainKeys{"rope_type", "type", "rope_theta"};
  static const std::set<std::string> kYarnKeys{"rope_type",  "type",   "rope_theta",     "factor",
                                               "original_max_position_embeddings", "beta_fast",
                                               "beta_slow", "mscale", "mscale_all_dim", "attention_factor",
                                               "truncate", "partial_rotary_factor"};
  if (type == "default") {
    for (const auto& [key, v] : block.items())
      if (!kPlainKeys.count(key) && !v.is_null())
        fail("{}.{} is {}, but rope_type 'default' (plain RoPE) takes no such setting", where, key, v.dump());
    return b;
  }
  if (type != "yarn")
    fail("{}: rope_type '{}' is not supported; DeepSeek models use 'yarn' (or 'default', plain RoPE)", where,
         type.empty() ? "(none)" : type);
  for (const auto& [key, v] : block.items())
    if (!kYarnKeys.count(key) && !v.is_null())
      fail("{}.{} is {}; dsv3 does not implement this YaRN setting", where, key, v.dump());
  YarnScaling y;
  if (!block.contains("factor") || block["factor"].is_null()) fail("{}: YaRN needs 'factor'", where);
  y.factor = number_at(block, where, "factor", 1.0);
  const double original = number_at(block, where, "original_max_position_embeddings", 4096);
  if (original <= 0 || std::floor(original) != original)
    fail("{}.original_max_position_embeddings must be a positive integer, got {}", where, original);
  y.original_max_position_embeddings = int64_t(original);
  y.beta_fast = number_at(block, where, "beta_fast", 32.0);
  y.beta_slow = number_at(block, where, "beta_slow", 1.0);
  y.mscale = number_at(block, where, "mscale", 1.0);
  y.mscale_all_dim = number_at(block, where, "mscale_all_dim", 0.0);
  if (!(y.factor > 0)) fail("{}.factor must be positive, got {}", where, y.factor);
  // transformers' YaRN options that change the formula dsv3 (DeepSeek's model.py) computes.
  if (const double a = number_at(block, where, "attention_factor", 1.0); a != 1.0)
    fail("{}.attention_factor is {}; dsv3 implements DeepSeek's scaling (softmax scale from mscale_all_dim), "
         "not an explicit attention_factor",
         where, a);
  if (const double p = number_at(block, where, "partial_rotary_factor", 1.0); p != 1.0)
    fail("{}.partial_rotary_factor is {}; DeepSeek models rotate all qk_rope_head_dim dimensions (1.0)", where, p);
  if (block.contains("truncate") && !block["truncate"].is_null() && block["truncate"] != true)
    fail("{}.truncate is {}; dsv3 implements YaRN with truncated correction bounds (true, as DeepSeek)", where,
         block["truncate"].dump());
  b.yarn = y;
  return b;
}

std::string describe(const RopeConfig& r) {
  if (!r.yarn) return fmt::format("theta {}, no scaling", r.rope_theta);
  const YarnScaling& y = *r.yarn;
  return fmt::format("theta {}, YaRN factor {} over {} positions, beta {}/{}, mscale {}/{}", r.rope_theta, y.factor,
                     y.original_max_position_embeddings, y.beta_fast, y.beta_slow, y.mscale, y.mscale_all_dim);
}

}  // namespace

RopeConfig parse_rope_config(const nlohmann::json& config, const std::string& source) {
  RopeConfig r;
  std::optional<double> top_theta;
  if (const auto it = config.find("rope_theta"); it != config.end() && !it->is_null()) {
    if (!it->is_number()) fail("{}: field 'rope_theta' must be a number, got {}", source, it->dump());
    top_theta = it->get<double>();
  }
  std::optional<RopeConfig> v4, v5;
  if (const auto it = config.find("rope_scaling"); it != config.end() && !it->is_null()) {
    const RopeBlock b = parse_block(*it, source + ": rope_scaling");
    v4 = RopeConfig{.rope_theta = b.rope_theta.value_or(top_theta.value_or(r.rope_theta)), .yarn = b.yarn};
  }
  if (const auto it = config.find("rope_parameters"); it != config.end() && !it->is_null()) {
    const RopeBlock b = parse_block(*it, source + ": rope_parameters");
    if (b.rope_theta && top_theta && *b.rope_theta != *top_theta)
      fail("{}: rope_parameters.rope_theta is {} but rope_theta is {}; which one is meant?", source, *b.rope_theta,
           *top_theta);
    v5 = RopeConfig{.rope_theta = b.rope_theta.value_or(top_theta.value_or(r.rope_theta)), .yarn = b.yarn};
  }
  if (v4 && v5 && !(*v4 == *v5))
    fail("{}: rope_scaling ({}) and rope_parameters ({}) disagree; which one is meant?", source, describe(*v4),
         describe(*v5));
  if (v5) r = *v5;
  else if (v4) r = *v4;
  else r.rope_theta = top_theta.value_or(r.rope_theta);
  if (!(r.rope_theta > 1)) fail("{}: rope_theta must be greater than 1, got {}", source, r.rope_theta);
  return r;
}

}  // namespace dsv3
