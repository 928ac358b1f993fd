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
  expect_error(k, "rope_scaling type 'linear'");
  k = j;
  k["num_experts_per_tok"] = 17;
  expect_error(k, "exceeds 'n_routed_experts'");
  expect_error(nlohmann::json::array(), "not a JSON object");
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
