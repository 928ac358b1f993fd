#include "io/model_config.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "base/error.h"
#include "io/json_file.h"

namespace dsv3 {
namespace {

nlohmann::json golden_config(const std::string& name) {
  return read_json_file("tests/data/golden/" + name + "/config.json");
}

void expect_error(const nlohmann::json& j, const std::string& fragment) {
  try {
    ModelConfig::from_json(j, "cfg.json");
    ADD_FAILURE() << "no error; wanted " << fragment;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("cfg.json"), std::string::npos) << e.what();
  }
}

TEST(ModelConfig, ParsesV3Tiny) {
  const ModelConfig c = ModelConfig::from_json(golden_config("v3-tiny-fp8"));
  EXPECT_EQ(c.model_type, "deepseek_v3");
  EXPECT_EQ(c.hidden_size, 192);
  EXPECT_EQ(c.q_lora_rank, 96);
  EXPECT_EQ(c.topk_method, TopkMethod::NoauxTc);
  EXPECT_EQ(c.scoring_func, ScoringFunc::Sigmoid);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_TRUE(c.has_mtp());
  EXPECT_FALSE(c.is_moe_layer(0));
  EXPECT_TRUE(c.is_moe_layer(1));
  EXPECT_TRUE(c.is_moe_layer(3));  // the MTP layer
  ASSERT_TRUE(c.rope_scaling.has_value());
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{1});
}

TEST(ModelConfig, V2LiteHasNoQLora) {
  const ModelConfig c = ModelConfig::from_json(golden_config("v2-lite-tiny-bf16"));
  EXPECT_EQ(c.q_lora_rank, 0);
  EXPECT_EQ(c.scoring_func, ScoringFunc::Softmax);
  EXPECT_EQ(c.topk_method, TopkMethod::Greedy);
  EXPECT_FALSE(c.norm_topk_prob);
}

// The derived constants model.py printed into the golden meta.json.
TEST(ModelConfig, SoftmaxScaleAndYarnFrequenciesMatchModelPy) {
  const ModelConfig v3 = ModelConfig::from_json(golden_config("v3-tiny-fp8"));
  EXPECT_NEAR(v3.softmax_scale(), 0.2704675577217602, 1e-12);
  const std::vector<double> want{1.0, 0.3162277936935425, 0.10000000149011612, 0.023914724588394165,
                                 0.005124999675899744, 0.0008498621755279601, 2.5000001187436283e-05,
                                 7.905694474175107e-06};
  const auto got = v3.rope_inv_freq();
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], want[i] * 3e-7) << i;
  const ModelConfig v2 = ModelConfig::from_json(golden_config("v2-lite-tiny-bf16"));
  EXPECT_NEAR(v2.softmax_scale(), 0.22944, 1e-5);
}

TEST(ModelConfig, MoeLayerFreqIsHonoured) {
  auto j = golden_config("v3-tiny-fp8");
  j["moe_layer_freq"] = 2;
  const ModelConfig c = ModelConfig::from_json(j);
  EXPECT_FALSE(c.is_moe_layer(1));
  EXPECT_TRUE(c.is_moe_layer(2));
}

TEST(ModelConfig, Errors) {
  auto j = golden_config("v3-tiny-fp8");
  auto without = [&](const char* f) {
    auto k = j;
    k.erase(f);
    return k;
  };
  expect_error(without("kv_lora_rank"), "missing field 'kv_lora_rank'");
  expect_error(without("hidden_size"), "missing field 'hidden_size'");
  expect_error(without("model_type"), "missing field 'model_type'");
  auto k = j;
  k["model_type"] = "llama";
  expect_error(k, "model_type 'llama' is not supported");
  k = j;
  k["hidden_size"] = "big";
  expect_error(k, "'hidden_size' must be an integer");
  k = j;
  k["kv_lora_rank"] = 0;
  expect_error(k, "'kv_lora_rank' is 0");
  k = j;
  k["n_group"] = 3;
  expect_error(k, "not a multiple of 'n_group'");
  k = j;
  k["topk_method"] = "magic";
  expect_error(k, "topk_method 'magic'");
  k = j;
  k["rope_scaling"]["type"] = "linear";
  expect_error(k, "rope_type 'linear' is not supported");
  k = j;
  k["num_experts_per_tok"] = 17;
  expect_error(k, "exceeds 'n_routed_experts'");
  expect_error(nlohmann::json::array(), "not a JSON object");
}

nlohmann::json real_config(const std::string& name) { return read_json_file("tests/data/configs/" + name + ".json"); }

// The published configs of the family parse, and every field is either read or known.
TEST(ModelConfig, RealConfigsOfTheFamily) {
  for (const char* name : {"deepseek-v3", "deepseek-v3.1", "deepseek-v3-transformers5", "kimi-k2-instruct",
                           "moonlight-16b-a3b", "deepseek-v2-lite"}) {
    SCOPED_TRACE(name);
    const ModelConfig c = ModelConfig::from_json(real_config(name), name);
    EXPECT_TRUE(c.unread_fields.empty()) << c.unread_fields.front();
  }
  const ModelConfig k2 = ModelConfig::from_json(real_config("kimi-k2-instruct"));
  EXPECT_EQ(k2.rope_theta, 50000.0);
  ASSERT_TRUE(k2.rope_scaling);
  EXPECT_EQ(k2.rope_scaling->factor, 32.0);
  EXPECT_EQ(k2.rope_scaling->beta_fast, 1.0);
  const ModelConfig moonlight = ModelConfig::from_json(real_config("moonlight-16b-a3b"));
  EXPECT_FALSE(moonlight.rope_scaling);
  EXPECT_EQ(moonlight.q_lora_rank, 0);
  EXPECT_EQ(moonlight.max_position_embeddings, 8192);
}

// transformers 5 writes rope_parameters (rope_type and rope_theta inside) instead of
// rope_scaling + rope_theta; both forms must give the same RoPE, so the same logits. Before,
// the v5 form silently lost YaRN and fell back to theta 10000.
TEST(ModelConfig, RopeParametersOfTransformers5EqualRopeScaling) {
  const ModelConfig v4 = ModelConfig::from_json(real_config("deepseek-v3"));
  const ModelConfig v5 = ModelConfig::from_json(real_config("deepseek-v3-transformers5"));
  ASSERT_TRUE(v5.rope_scaling);
  EXPECT_EQ(*v4.rope_scaling, *v5.rope_scaling);
  EXPECT_EQ(v4.rope_theta, v5.rope_theta);
  EXPECT_EQ(v4.rope_inv_freq(), v5.rope_inv_freq());
  EXPECT_EQ(v4.softmax_scale(), v5.softmax_scale());

  // Kimi's theta 50000 inside rope_parameters, no top-level rope_theta.
  auto k2 = real_config("kimi-k2-instruct");
  nlohmann::json params = k2["rope_scaling"];
  params.erase("type");
  params["rope_type"] = "yarn";
  params["rope_theta"] = 50000.0;
  k2.erase("rope_scaling");
  k2.erase("rope_theta");
  k2["rope_parameters"] = params;
  const ModelConfig k2v5 = ModelConfig::from_json(k2);
  EXPECT_EQ(k2v5.rope_theta, 50000.0);
  EXPECT_EQ(k2v5.rope_inv_freq(), ModelConfig::from_json(real_config("kimi-k2-instruct")).rope_inv_freq());

  // Plain RoPE as transformers 5 writes it (Moonlight).
  auto m = real_config("moonlight-16b-a3b");
  m.erase("rope_scaling");
  m.erase("rope_theta");
  m["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 50000.0}};
  const ModelConfig mv5 = ModelConfig::from_json(m);
  EXPECT_FALSE(mv5.rope_scaling);
  EXPECT_EQ(mv5.rope_theta, 50000.0);

  // Both forms present and agreeing (a config edited by hand): fine.
  auto both = real_config("deepseek-v3-transformers5");
  both["rope_scaling"] = real_config("deepseek-v3")["rope_scaling"];
  both["rope_theta"] = 10000;
  EXPECT_EQ(ModelConfig::from_json(both).rope_inv_freq(), v4.rope_inv_freq());
}

TEST(ModelConfig, RopeSettingsDsv3DoesNotImplementAreErrors) {
  const auto v5 = real_config("deepseek-v3-transformers5");
  auto with = [&](const char* key, const nlohmann::json& v) {
    auto k = v5;
    k["rope_parameters"].erase("type");
    k["rope_parameters"][key] = v;
    return k;
  };
  expect_error(with("rope_type", "llama3"), "rope_parameters: rope_type 'llama3' is not supported");
  expect_error(with("rope_type", "dynamic"), "rope_type 'dynamic'");
  expect_error(with("attention_factor", 1.2), "rope_parameters.attention_factor is 1.2");
  expect_error(with("truncate", false), "rope_parameters.truncate is false");
  expect_error(with("long_factor", nlohmann::json::array({1, 2})), "rope_parameters.long_factor is [1,2]");
  auto k = with("rope_theta", 20000);
  k["rope_theta"] = 10000;
  expect_error(k, "rope_parameters.rope_theta is 20000 but rope_theta is 10000");
  k = v5;
  k["rope_parameters"]["rope_type"] = "yarn";
  k["rope_parameters"].erase("type");
  k["rope_parameters"].erase("factor");
  expect_error(k, "YaRN needs 'factor'");
  k = v5;
  k["rope_parameters"] = {{"full_attention", {{"rope_type", "default"}}}};
  expect_error(k, "per-layer-type RoPE");
  k = v5;
  k["rope_parameters"] = {{"rope_type", "default"}, {"factor", 4}};
  expect_error(k, "rope_parameters.factor is 4, but rope_type 'default'");
  k = v5;
  k["rope_scaling"] = real_config("deepseek-v3")["rope_scaling"];
  k["rope_scaling"]["factor"] = 20;
  expect_error(k, "rope_scaling (theta 10000, YaRN factor 20");
  k = v5;
  k["rope_parameters"]["type"] = "default";
  expect_error(k, "'rope_type' is 'yarn' but 'type' is 'default'");
}

// Fields that change the math must hold what dsv3 implements; before, they were ignored.
TEST(ModelConfig, MathChangingFieldsDsv3DoesNotImplementAreErrors) {
  const auto v3 = real_config("deepseek-v3");
  auto with = [&](const char* key, const nlohmann::json& v) {
    auto k = v3;
    k[key] = v;
    return k;
  };
  expect_error(with("hidden_act", "gelu"), "'hidden_act' is \"gelu\"; dsv3 implements only \"silu\"");
  expect_error(with("attention_bias", true), "'attention_bias' is true");
  expect_error(with("mlp_bias", true), "'mlp_bias' is true");
  expect_error(with("rope_interleave", false), "'rope_interleave' is false");
  expect_error(with("sliding_window", 4096), "'sliding_window' is 4096");
  auto q = [&](const char* key, const nlohmann::json& v) {
    auto k = v3;
    k["quantization_config"][key] = v;
    return k;
  };
  // compressed-tensors is read (compressed_tensors_config_test.cpp), but not with FP8's settings.
  expect_error(q("quant_method", "compressed-tensors"), "dsv3 does not know this compressed-tensors setting");
  expect_error(q("quant_method", "awq"), "quant_method is \"awq\"");
  expect_error(q("fmt", "e5m2"), "quantization_config.fmt is \"e5m2\"");
  expect_error(q("weight_block_size", nlohmann::json::array({64, 64})), "weight_block_size is [64,64]");
  expect_error(q("activation_scheme", "static"), "activation_scheme is \"static\"");
  expect_error(q("config_groups", nlohmann::json::object({{"g", 1}})), "quantization_config.config_groups");
  auto k = v3;
  k["quantization_config"].erase("weight_block_size");
  expect_error(k, "FP8 without 'weight_block_size'");
  // Silu, no bias, null sliding window: the values dsv3 implements pass.
  EXPECT_NO_THROW(ModelConfig::from_json(with("sliding_window", nullptr)));
  EXPECT_NO_THROW(ModelConfig::from_json(with("rope_interleave", true)));
}

TEST(ModelConfig, UnknownFieldsAreListedNotIgnored) {
  auto j = real_config("deepseek-v3");
  j["my_new_knob"] = 3;
  j["another"] = "x";
  const ModelConfig c = ModelConfig::from_json(j);
  EXPECT_EQ(c.unread_fields, (std::vector<std::string>{"another", "my_new_knob"}));
}

TEST(ModelConfig, InvalidJsonFileNamesTheFile) {
  const std::string path = ::testing::TempDir() + "/bad_config.json";
  std::ofstream(path) << "{\"hidden_size\": 12,,}";
  try {
    read_json_file(path);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("invalid JSON"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dsv3
