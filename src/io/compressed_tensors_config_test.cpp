#include "io/compressed_tensors_config.h"

#include <gtest/gtest.h>

#include "base/error.h"

namespace dsv3 {
namespace {

// Kimi-K2-Thinking's config.json quantization_config, as published.
nlohmann::json kimi() {
  return nlohmann::json::parse(R"({
    "config_groups": {"group_0": {"input_activations": null, "output_activations": null, "targets": ["Linear"],
      "weights": {"actorder": null, "block_structure": null, "dynamic": false, "group_size": 32, "num_bits": 4,
                  "observer": "minmax", "observer_kwargs": {}, "strategy": "group", "symmetric": true, "type": "int"}}},
    "format": "pack-quantized",
    "ignore": ["lm_head", "re:.*self_attn.*", "re:.*shared_experts.*", "re:.*mlp\\.(gate|up|gate_up|down)_proj.*"],
    "kv_cache_scheme": null, "quant_method": "compressed-tensors", "quantization_status": "compressed"})");
}

void expect_error(const nlohmann::json& q, const std::string& part) {
  try {
    parse_compressed_tensors_config(q, "config.json: quantization_config");
    ADD_FAILURE() << "no error; expected one containing: " << part;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

TEST(CompressedTensorsConfig, KimiK2ThinkingQuantisesRoutedExpertsOnly) {
  const auto c = parse_compressed_tensors_config(kimi(), "q");
  const auto* s = c.scheme_for("model.layers.3.mlp.experts.17.down_proj", true);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->num_bits, 4);
  EXPECT_EQ(s->group_size, 32);
  EXPECT_EQ(c.scheme_for("model.layers.3.mlp.experts.17.down_proj", false), nullptr);  // not a Linear
  EXPECT_EQ(c.scheme_for("model.layers.3.self_attn.q_a_proj", true), nullptr);
  EXPECT_EQ(c.scheme_for("model.layers.3.mlp.shared_experts.up_proj", true), nullptr);
  EXPECT_EQ(c.scheme_for("model.layers.0.mlp.gate_proj", true), nullptr);  // dense layer
  EXPECT_EQ(c.scheme_for("lm_head", true), nullptr);
  // re: matches at the start only (Python's re.match): a pattern without ".*" needs the prefix.
  auto q = kimi();
  q["ignore"] = {"re:experts"};
  EXPECT_NE(parse_compressed_tensors_config(q, "q").scheme_for("model.layers.3.mlp.experts.1.up_proj", true), nullptr);
  q["ignore"] = {"re:model\\.layers\\.3\\."};
  EXPECT_EQ(parse_compressed_tensors_config(q, "q").scheme_for("model.layers.3.mlp.experts.1.up_proj", true), nullptr);
  // Targets by name and by pattern; channel strategy.
  q = kimi();
  q["config_groups"]["group_0"]["targets"] = {"re:.*experts.*"};
  q["config_groups"]["group_0"]["weights"]["strategy"] = "channel";
  q["config_groups"]["group_0"]["weights"]["num_bits"] = 8;
  const auto c2 = parse_compressed_tensors_config(q, "q");
  ASSERT_NE(c2.scheme_for("model.layers.3.mlp.experts.1.up_proj", false), nullptr);
  EXPECT_EQ(c2.scheme_for("model.layers.3.mlp.experts.1.up_proj", false)->group_size, 0);
  EXPECT_EQ(c2.scheme_for("model.layers.3.mlp.experts.1.up_proj", false)->num_bits, 8);
}

TEST(CompressedTensorsConfig, OtherSchemesAreRefusedNamingTheField) {
  auto with = [](const std::string& key, const nlohmann::json& v) {
    auto q = kimi();
    q[key] = v;
    return q;
  };
  auto weights = [](const std::string& key, const nlohmann::json& v) {
    auto q = kimi();
    q["config_groups"]["group_0"]["weights"][key] = v;
    return q;
  };
  expect_error(with("format", "float-quantized"), "quantization_config.format is \"float-quantized\"");
  expect_error(with("format", "nvfp4-pack-quantized"), "format is \"nvfp4-pack-quantized\"");
  expect_error(with("quantization_status", "frozen"), "quantization_status is \"frozen\"");
  expect_error(with("kv_cache_scheme", {{"num_bits", 8}}), "kv_cache_scheme");
  expect_error(with("ignore", {"re:(unclosed"}), "ignore[0]: \"re:(unclosed\" is not a valid regular expression");
  expect_error(with("mystery", 1), "quantization_config.mystery is 1");
  expect_error(weights("num_bits", 3), "group_0.weights.num_bits is 3");
  expect_error(weights("type", "float"), "weights.type is \"float\"");
  expect_error(weights("symmetric", false), "weights.symmetric is false");
  expect_error(weights("strategy", "tensor"), "weights.strategy is \"tensor\"");
  expect_error(weights("strategy", "block"), "weights.strategy is \"block\"");
  expect_error(weights("group_size", 0), "weights.group_size is 0");
  expect_error(weights("actorder", "group"), "weights.actorder is \"group\"");
  auto q = kimi();
  q["config_groups"]["group_0"]["input_activations"] = {{"num_bits", 8}};
  expect_error(q, "group_0.input_activations");
  q = kimi();
  q["config_groups"] = nlohmann::json::object();
  expect_error(q, "config_groups is {}");
}

TEST(CompressedTensorsConfig, OnlyCompressedTensorsConfigsAreParsed) {
  nlohmann::json config = {{"quantization_config", {{"quant_method", "fp8"}}}};
  EXPECT_FALSE(compressed_tensors_config_of(config, "config.json"));
  config["quantization_config"] = kimi();
  EXPECT_TRUE(compressed_tensors_config_of(config, "config.json"));
  EXPECT_FALSE(compressed_tensors_config_of(nlohmann::json::object(), "config.json"));
}

}  // namespace
}  // namespace dsv3
