// RoPE settings of a config.json in either of the two forms Hugging Face writes:
//   transformers 4: "rope_theta": 10000, "rope_scaling": {"type": "yarn", "factor": 40, ...}
//   transformers 5: "rope_parameters": {"rope_type": "yarn", "rope_theta": 10000, "factor": 40, ...}
// Both give the same RopeConfig (and so the same logits). Anything dsv3 does not implement (a
// rope_type other than default/yarn, an unknown key, a per-layer-type dictionary, YaRN options
// that change the formula) is an error naming the field and value: RoPE settings change every
// logit, so none is ignored.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace dsv3 {

struct YarnScaling {
  double factor = 1.0;
  int64_t original_max_position_embeddings = 4096;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double mscale = 1.0;
  double mscale_all_dim = 0.0;
  bool operator==(const YarnScaling&) const = default;
};

struct RopeConfig {
  double rope_theta = 10000.0;  // DeepseekV3Config's default_theta
  std::optional<YarnScaling> yarn;
  bool operator==(const RopeConfig&) const = default;
};

// Reads rope_theta / rope_scaling and rope_parameters from the config object `config`; when
// both forms are present they must agree. `source` names the file in error messages.
RopeConfig parse_rope_config(const nlohmann::json& config, const std::string& source);

}  // namespace dsv3
