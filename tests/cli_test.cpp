// The command-line interface as a user meets it: bad input exits 2 with a message naming the
// problem, never a crash; dsv3 init + dsv3 logits work on checkpoints of other shapes.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <utility>

#include "io/json_file.h"
#include "io/test_files.h"
#include "tests/cli_util.h"
#include "tests/golden_util.h"
#include "weights/presets.h"

namespace dsv3 {
namespace {

const std::string kFp8 = "tests/data/golden/v3-tiny-fp8";

void expect_exit2(const std::string& args, const std::string& fragment) {
  const auto r = test::run_dsv3(args);
  EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
  EXPECT_NE(r.output.find(fragment), std::string::npos) << args << "\n" << r.output;
}

// A copy of the golden FP8 checkpoint that a test may damage.
std::string copy_checkpoint(const test::TempDir& d) {
  for (const auto& e : std::filesystem::directory_iterator(kFp8))
    if (e.is_regular_file()) std::filesystem::copy_file(e.path(), d.file(e.path().filename().string()));
  return d.path();
}

TEST(Cli, HelpAndBadFlags) {
  const auto help = test::run_dsv3("logits --help");
  EXPECT_EQ(help.exit_code, 0);
  for (const char* flag :
       {"--model", "--ids", "--decode", "--out", "--attention", "--mtp-out", "--threads", "--fp8-head"})
    EXPECT_NE(help.output.find(flag), std::string::npos) << flag;
  expect_exit2("", "subcommand");
  expect_exit2("logits --model " + kFp8 + " --ids 1 --out /dev/null --bogus", "--bogus");
  expect_exit2("logits --model " + kFp8 + " --ids 1", "--out");
  expect_exit2("logits --model " + kFp8 + " --ids 1 --out /dev/null --attention fancy", "fancy");
  expect_exit2("frobnicate", "frobnicate");
}

TEST(Cli, BadPrompts) {
  expect_exit2("logits --model " + kFp8 + " --ids 1,1024 --out /dev/null", "1024 is out of range");
  expect_exit2("logits --model " + kFp8 + " --ids '' --out /dev/null", "empty");
  expect_exit2("logits --model " + kFp8 + " --ids 1,x --out /dev/null", "'x' is not a token id");
  expect_exit2("logits --model " + kFp8 + " --ids=-3 --out /dev/null", "not a token id");
}

TEST(Cli, BadModels) {
  expect_exit2("logits --model /nonexistent --ids 1 --out /dev/null", "/nonexistent");
  {
    test::TempDir d;
    const std::string dir = copy_checkpoint(d);
    const std::string shard = d.file("model-00002-of-00002.safetensors");
    std::filesystem::resize_file(shard, std::filesystem::file_size(shard) / 2);
    expect_exit2("logits --model " + dir + " --ids 1 --out /dev/null", "model-00002-of-00002.safetensors");
  }
  {
    test::TempDir d;
    const std::string dir = copy_checkpoint(d);
    test::write_file(d.file("config.json"), "{\"model_type\": \"deepseek_v3\",");
    expect_exit2("logits --model " + dir + " --ids 1 --out /dev/null", "invalid JSON");
  }
  {
    test::TempDir d;
    const std::string dir = copy_checkpoint(d);
    auto cfg = read_json_file(d.file("config.json"));
    cfg.erase("qk_rope_head_dim");
    write_text_file(d.file("config.json"), cfg.dump());
    expect_exit2("logits --model " + dir + " --ids 1 --out /dev/null", "missing field 'qk_rope_head_dim'");
  }
  {
    test::TempDir d;
    const std::string dir = copy_checkpoint(d);
    auto cfg = read_json_file(d.file("config.json"));
    cfg["model_type"] = "mixtral";
    write_text_file(d.file("config.json"), cfg.dump());
    expect_exit2("logits --model " + dir + " --ids 1 --out /dev/null", "model_type 'mixtral' is not supported");
    expect_exit2("info --model " + dir, "mixtral");
  }
  {
    test::TempDir d;
    const std::string dir = copy_checkpoint(d);
    auto cfg = read_json_file(d.file("config.json"));
    cfg["intermediate_size"] = 321;
    write_text_file(d.file("config.json"), cfg.dump());
    expect_exit2("logits --model " + dir + " --ids 1 --out /dev/null", "implies [321, 192]");
  }
}

TEST(Cli, InfoDescribesTheCheckpoint) {
  const auto r = test::run_dsv3("info --model " + kFp8);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* s : {"deepseek_v3", "+ 1 MTP layer", "F8_E4M3", "kv cache:     1280 bytes per token", "extra:"})
    EXPECT_NE(r.output.find(s), std::string::npos) << s << "\n" << r.output;
}

// info: q_lora_rank null (not 0) for V2-Lite-style checkpoints, the context length, and the
// dense/MoE split with moe_layer_freq (before, every layer past first_k_dense_replace counted as MoE).
TEST(Cli, InfoShowsQLoraNullContextAndTheMoeLayerFreqSplit) {
  auto r = test::run_dsv3("info --model tests/data/golden/v2-lite-tiny-bf16");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("q_lora_rank null"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("context:      163840 positions"), std::string::npos) << r.output;
  test::TempDir d;
  auto cfg = preset_config("v3-tiny");
  cfg["moe_layer_freq"] = 2;
  cfg["first_k_dense_replace"] = 0;
  cfg["num_hidden_layers"] = 3;
  cfg["my_new_knob"] = 1;
  write_text_file(d.file("in.json"), cfg.dump());
  r = test::run_dsv3("init --quiet --config " + d.file("in.json") + " --out " + d.file("ckpt") + " --dtype bf16");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = test::run_dsv3("info --model " + d.file("ckpt"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("layers:       3 (1 dense, 2 MoE)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("not read:     my_new_knob"), std::string::npos) << r.output;
  r = test::run_dsv3("logits --model " + d.file("ckpt") + " --ids 1,2 --out /dev/null");
  EXPECT_NE(r.output.find("did not read: my_new_knob"), std::string::npos) << r.output;
}

// transformers 5 writes RoPE under rope_parameters; the logits must be those of the
// transformers 4 form, bit for bit (before, YaRN was dropped and theta fell back to 10000).
TEST(Cli, RopeParametersConfigGivesTheSameLogits) {
  test::TempDir d;
  const std::string dir = copy_checkpoint(d);
  auto cfg = read_json_file(d.file("config.json"));
  nlohmann::json params = cfg["rope_scaling"];
  params.erase("type");
  params["rope_type"] = "yarn";
  params["rope_theta"] = cfg["rope_theta"];
  cfg.erase("rope_scaling");
  cfg.erase("rope_theta");
  cfg["rope_parameters"] = params;
  write_text_file(d.file("config.json"), cfg.dump());
  const std::string args = " --ids 3,1,4,1,5,9,2,6 --decode 3 --threads 1 --out ";
  auto r = test::run_dsv3("logits --model " + kFp8 + args + d.file("v4.bin"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = test::run_dsv3("logits --model " + dir + args + d.file("v5.bin"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(test::read_f32(d.file("v4.bin")), test::read_f32(d.file("v5.bin")));
  cfg["rope_parameters"]["rope_type"] = "longrope";
  write_text_file(d.file("config.json"), cfg.dump());
  expect_exit2("logits --model " + dir + args + "/dev/null", "rope_parameters: rope_type 'longrope' is not supported");
  expect_exit2("info --model " + dir, "rope_type 'longrope'");
}

TEST(Cli, InfoListsEveryProblem) {
  test::TempDir d;
  const std::string dir = copy_checkpoint(d);
  auto cfg = read_json_file(d.file("config.json"));
  cfg["intermediate_size"] = 321;  // three dense-MLP tensors now have the wrong shape
  cfg["n_shared_experts"] = 2;     // and every shared expert of the three MoE layers
  write_text_file(d.file("config.json"), cfg.dump());
  const auto r = test::run_dsv3("info --model " + dir);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("problems:     12"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("model.layers.0.mlp.down_proj.weight"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("model.layers.3.mlp.shared_experts.up_proj.weight"), std::string::npos) << r.output;
}

// init writes what the loader reads, for shapes the goldens do not have; the logits command
// agrees with the naive path and writes [decode+1, vocab] rows, MTP rows [L-1, vocab].
TEST(Cli, InitThenLogitsOnOtherShapes) {
  struct Shape {
    std::string name;
    nlohmann::ordered_json config;
    std::string dtype;
    int shards;
  };
  std::vector<Shape> shapes;
  auto a = preset_config("v3-tiny");
  a["hidden_size"] = 200;  // FP8 blocks cut by the edge in both directions
  a["moe_layer_freq"] = 2;
  a["first_k_dense_replace"] = 0;
  a["n_group"] = 1;
  a["topk_group"] = 1;
  a["vocab_size"] = 300;
  shapes.push_back({"freq2", a, "fp8", 3});
  auto b = preset_config("v2-lite-tiny");
  b["topk_method"] = "group_limited_greedy";
  b["n_group"] = 4;
  b["topk_group"] = 2;
  b["routed_scaling_factor"] = 16.0;
  b["q_lora_rank"] = 48;
  shapes.push_back({"v2groups", b, "bf16", 1});
  for (const auto& s : shapes) {
    test::TempDir d;
    const std::string cfg = d.file("in.json"), out = d.file("ckpt");
    write_text_file(cfg, s.config.dump());
    auto r = test::run_dsv3("init --quiet --config " + cfg + " --out " + out + " --dtype " + s.dtype +
                            " --shards " + std::to_string(s.shards) + " --seed 3");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const bool mtp = s.config.value("num_nextn_predict_layers", 0) > 0;
    r = test::run_dsv3("logits --threads 1 --model " + out + " --ids 3,1,4,1,5,9,2,6 --decode 4 --out " +
                       d.file("a.bin") + (mtp ? " --mtp-out " + d.file("m.bin") : ""));
    ASSERT_EQ(r.exit_code, 0) << s.name << "\n" << r.output;
    r = test::run_dsv3("logits --threads 1 --attention naive --model " + out + " --ids 3,1,4,1,5,9,2,6 --decode 4 --out " +
                       d.file("n.bin"));
    ASSERT_EQ(r.exit_code, 0) << s.name << "\n" << r.output;
    const auto la = test::read_f32(d.file("a.bin")), ln = test::read_f32(d.file("n.bin"));
    const int64_t vocab = s.config["vocab_size"];
    EXPECT_EQ(la.size(), size_t(5 * vocab)) << s.name;
    EXPECT_LE(test::max_abs_diff(la, ln), 1e-4) << s.name;
    if (mtp) {
      EXPECT_EQ(test::read_f32(d.file("m.bin")).size(), size_t(7 * vocab)) << s.name;
    }
  }
}

// --fp8-head re-stores the checkpoint's BF16 lm_head as FP8 blocks at load: the logits move by
// FP8 rounding (3 mantissa bits: a few percent RMS), not more, and not at all without the flag.
TEST(Cli, Fp8HeadLogitsMoveByFp8Rounding) {
  test::TempDir d;
  const std::string args = "logits --model " + kFp8 + " --ids 1,2,3 --decode 2 --threads 1 --out ";
  for (const auto& [file, flag] : {std::pair{"bf16.bin", ""}, std::pair{"fp8.bin", " --fp8-head"}}) {
    const auto r = test::run_dsv3(args + d.file(file) + flag);
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  const auto a = test::read_f32(d.file("bf16.bin")), b = test::read_f32(d.file("fp8.bin"));
  ASSERT_EQ(a.size(), b.size());
  double diff = 0, norm = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    norm += double(a[i]) * a[i];
  }
  const double rel_rms = std::sqrt(diff / norm);
  EXPECT_GT(rel_rms, 1e-3);  // the head was quantised
  EXPECT_LT(rel_rms, 0.1);   // ... with the right blocks and scales (2.7% here)
}

TEST(Cli, InitIsDeterministicAndChecksItsInput) {
  test::TempDir d;
  ASSERT_EQ(test::run_dsv3("init --quiet --preset v3-tiny --seed 9 --out " + d.file("a")).exit_code, 0);
  ASSERT_EQ(test::run_dsv3("init --quiet --preset v3-tiny --seed 9 --out " + d.file("b")).exit_code, 0);
  EXPECT_EQ(test::read_file(d.file("a/model.safetensors")), test::read_file(d.file("b/model.safetensors")));
  expect_exit2("init --preset nope --out " + d.file("c"), "unknown preset 'nope'");
  expect_exit2("init --out " + d.file("c"), "exactly one of --preset");
  expect_exit2("init --preset v3-tiny --dtype fp4 --out " + d.file("c"), "fp4");
}

}  // namespace
}  // namespace dsv3
