// Issue 19: hostile and careless files must fail with an Error that names the file and the
// field, never crash, hang or load into NaN logits. Each test builds its minimal input.
#include <gtest/gtest.h>

#include <string>

#include "base/error.h"
#include "io/checkpoint.h"
#include "io/json_file.h"
#include "io/json_get.h"
#include "io/model_config.h"
#include "io/safetensors.h"
#include "io/safetensors_writer.h"
#include "io/test_files.h"

namespace dsv3 {
namespace {

nlohmann::json v3_config() { return read_json_file("tests/data/golden/v3-tiny-fp8/config.json"); }

// from_json must throw Error naming cfg.json and containing every fragment.
void expect_config_error(const nlohmann::json& j, std::initializer_list<std::string> fragments) {
  try {
    ModelConfig::from_json(j, "cfg.json");
    ADD_FAILURE() << "no error; wanted " << *fragments.begin();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("cfg.json"), std::string::npos) << msg;
    for (const auto& f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << msg;
  }
}

template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(HostileConfig, RopeThetaZeroOrNegative) {
  for (double theta : {0.0, -10000.0, 1.0}) {
    auto j = v3_config();
    j["rope_theta"] = theta;
    expect_config_error(j, {"rope_theta must be greater than 1, got"});
  }
}

TEST(HostileConfig, YarnBetaFastNegative) {
  auto j = v3_config();
  j["rope_scaling"]["beta_fast"] = -32;
  expect_config_error(j, {"'rope_scaling.beta_fast' is -32"});
  j = v3_config();
  j["rope_scaling"]["beta_slow"] = 0;
  expect_config_error(j, {"'rope_scaling.beta_slow' is 0"});
}

TEST(HostileConfig, HugeScalesThatGiveNaNOrZeroLogits) {
  auto j = v3_config();
  j["routed_scaling_factor"] = 1e308;
  expect_config_error(j, {"'routed_scaling_factor' is 1e+308"});
  j = v3_config();
  j["rms_norm_eps"] = 1e308;
  expect_config_error(j, {"'rms_norm_eps' is 1e+308"});
  j = v3_config();
  j["rope_scaling"]["factor"] = 1e300;
  expect_config_error(j, {"'rope_scaling.factor'"});
}

// 1e300 is integral as a double; converting it to int64_t was undefined behaviour and printed
// INT64_MIN. The message must quote the value as written.
TEST(HostileConfig, IntegerFieldBeyondInt64) {
  auto j = v3_config();
  j["hidden_size"] = 1e300;
  expect_config_error(j, {"'hidden_size'", "1e+300"});
  EXPECT_EQ(error_of([&] { ModelConfig::from_json(j, "cfg.json"); }).find("-9223372036854775808"),
            std::string::npos);
  j = v3_config();
  j["vocab_size"] = 18446744073709551615ull;
  expect_config_error(j, {"'vocab_size'"});
}

TEST(HostileConfig, CountsThatWouldHangInfo) {
  for (const char* field : {"num_hidden_layers", "n_routed_experts", "vocab_size", "num_attention_heads"}) {
    auto j = v3_config();
    j[field] = int64_t(1000000000000);
    expect_config_error(j, {std::string("'") + field + "' is 1000000000000"});
  }
}

TEST(HostileConfig, SizesNearTwoToThe63) {
  for (const char* field : {"hidden_size", "intermediate_size", "kv_lora_rank", "qk_nope_head_dim", "v_head_dim",
                            "moe_intermediate_size", "q_lora_rank"}) {
    auto j = v3_config();
    j[field] = int64_t(1) << 62;
    expect_config_error(j, {std::string("'") + field + "' is 4611686018427387904"});
  }
}

TEST(HostileConfig, ProductOfInRangeSizes) {
  auto j = v3_config();
  j["hidden_size"] = 65536;
  j["n_routed_experts"] = 4096;
  j["n_group"] = 1;
  j["topk_group"] = 1;
  j["moe_intermediate_size"] = 131072;
  j["num_hidden_layers"] = 1024;
  expect_config_error(j, {"parameters", "at most"});
}

TEST(HostileConfig, MaxPositionEmbeddingsZero) {
  auto j = v3_config();
  j["max_position_embeddings"] = 0;
  expect_config_error(j, {"'max_position_embeddings' is 0"});
}

TEST(HostileConfig, TokenIdsOutsideTheVocabulary) {
  auto j = v3_config();
  j["eos_token_id"] = 1 << 30;
  expect_config_error(j, {"'eos_token_id' is 1073741824"});
}

// The rope_scaling error read a temporary string that was gone (heap use-after-free under
// ASan; an empty file name in release builds).
TEST(HostileConfig, RopeScalingErrorNamesTheFile) {
  auto j = v3_config();
  j["rope_scaling"]["type"] = 5;
  expect_config_error(j, {"cfg.json", "rope_scaling.type must be a string, got 5"});
  j = v3_config();
  j["rope_scaling"]["beta_fast"] = "fast";
  expect_config_error(j, {"cfg.json", "rope_scaling.beta_fast must be a number"});
}

TEST(HostileJson, NumberBeyondDoubleRange) {
  test::TempDir d;
  test::write_file(d.file("config.json"), R"({"hidden_size": 1e999})");
  const std::string msg = error_of([&] { read_json_file(d.file("config.json")); });
  EXPECT_NE(msg.find(d.file("config.json")), std::string::npos) << msg;
  EXPECT_NE(msg.find("1e999"), std::string::npos) << msg;
}

TEST(HostileJson, DeepNestingIsRefusedBeforeParsing) {
  const std::string deep = "{\"a\": " + std::string(1000000, '[') + std::string(1000000, ']') + "}";
  const std::string msg = error_of([&] { parse_json(deep, "config.json"); });
  EXPECT_NE(msg.find("config.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("deeper than 256"), std::string::npos) << msg;
  // Brackets inside strings do not count.
  EXPECT_NO_THROW(parse_json("[\"" + std::string(1000, '[') + "\"]", "x"));
}

TEST(HostileJson, TypedGettersNameTheField) {
  const auto j = parse_json(R"({"type": 5, "dropout": "0.1", "n": 2.0, "big": 1e300})", "tokenizer.json");
  EXPECT_EQ(error_of([&] { json_string(j, "type", "", "tokenizer.json: normalizer"); }),
            "tokenizer.json: normalizer: 'type' must be a string, got 5");
  EXPECT_EQ(error_of([&] { json_number(j, "dropout", 0, "tokenizer.json: model"); }),
            "tokenizer.json: model: 'dropout' must be a number, got \"0.1\"");
  EXPECT_EQ(json_integer(j, "n", 0, "x"), 2);
  EXPECT_NE(error_of([&] { json_integer(j, "big", 0, "x"); }).find("'big' is 1e+300"), std::string::npos);
  EXPECT_EQ(json_integer(j, "absent", 7, "x"), 7);
}

TEST(HostileCheckpoint, IndexWithHugeNumber) {
  test::TempDir d;
  write_text_file(d.file("config.json"), "{}");
  write_text_file(d.file("model.safetensors.index.json"), R"({"metadata": {"total_size": 1e999}, "weight_map": {}})");
  const std::string msg = error_of([&] { Checkpoint::open(d.path()); });
  EXPECT_NE(msg.find("model.safetensors.index.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("invalid JSON"), std::string::npos) << msg;
}

std::string safetensors_bytes(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((uint64_t(header.size()) >> (8 * i)) & 0xff);
  return out + header + data;
}

std::string open_error(const std::string& bytes) {
  test::TempDir d;
  test::write_file(d.file("x.safetensors"), bytes);
  return error_of([&] { SafetensorsFile f(d.file("x.safetensors")); });
}

// 2^62 F32 elements are 2^64 bytes: the byte count wrapped to 0 and matched data_offsets [0, 0].
TEST(HostileSafetensors, ByteCountOverflow) {
  const std::string msg =
      open_error(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}})", ""));
  EXPECT_NE(msg.find("'w'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("2^64 bytes"), std::string::npos) << msg;
  const std::string msg2 = open_error(
      safetensors_bytes(R"({"w":{"dtype":"BF16","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", ""));
  EXPECT_NE(msg2.find("'w'"), std::string::npos) << msg2;
}

TEST(HostileSafetensors, DuplicateTensorName) {
  const std::string msg = open_error(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                                       R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                                                       std::string(8, '\0')));
  EXPECT_NE(msg.find("x.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("key 'w' appears twice"), std::string::npos) << msg;
}

TEST(HostileSafetensors, HugeNumberAndDeepMetadata) {
  EXPECT_NE(open_error(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[1e999],"data_offsets":[0,4]}})",
                                         std::string(4, '\0')))
                .find("invalid JSON"),
            std::string::npos);
  const std::string deep = R"({"__metadata__":{"a":)" + std::string(100000, '[') + std::string(100000, ']') + "}}";
  EXPECT_NE(open_error(safetensors_bytes(deep, "")).find("deeper than"), std::string::npos);
}

}  // namespace
}  // namespace dsv3
