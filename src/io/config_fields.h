// The config.json fields that ModelConfig does not read into numbers. A field that would change
// the math must hold the value dsv3 implements (hidden_act silu, no attention or MLP biases,
// interleaved RoPE, no sliding window, FP8 128x128 block quantisation or none): anything else is
// an error naming the field and its value. Bookkeeping fields (architectures, torch_dtype,
// training-only settings) are known and skipped. Whatever is left is returned, so that the front
// ends can say which fields were not read instead of ignoring them silently.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace dsv3 {

// `config` is the config.json object; `source` names it in error messages. Returns the names of
// the fields dsv3 does not know, sorted.
std::vector<std::string> check_config_fields(const nlohmann::json& config, const std::string& source);

}  // namespace dsv3
