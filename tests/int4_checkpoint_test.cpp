// 4-bit experts end to end: `dsv3 quantize --to int4` (convert/convert.h) on a golden checkpoint,
// read back and run; and the Kimi-K2-Thinking layout (its real config, sizes shrunk, tensors named
// as it names them) with its error cases.
//
// What is compared:
// - every packed expert weight read back: dequantised (code x scale, f32) within half a step of
//   the BF16 original (the quantisation's own error; the library's exact rules are checked in
//   src/weights/packed_int_test.cpp against its outputs);
// - the int4 model's logits equal, bit for bit, those of the same model whose experts are F32
//   copies of the dequantised weights (the kernels read packed weights in the F32 order);
// - the int4 model's logits against the BF16 model's: reported (max abs difference, greedy tokens),
//   and bounded loosely (the quantisation error is the model's, not a tolerance of ours).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>

#include "backends/cpu/cpu_backend.h"
#include "base/error.h"
#include "convert/convert.h"
#include "io/safetensors.h"
#include "io/safetensors_writer.h"
#include "io/test_files.h"
#include "model/model.h"
#include "runtime/greedy.h"
#include "tests/golden_util.h"
#include "weights/loaded_checkpoint.h"
#include "weights/random_checkpoint.h"

namespace dsv3 {
namespace {

namespace fs = std::filesystem;

std::vector<MlpWeights*> routed_experts(ModelWeights& w) {
  std::vector<MlpWeights*> out;
  auto add = [&](LayerWeights& l) {
    for (auto& e : l.moe.experts) out.push_back(&e);
  };
  for (auto& l : w.layers) add(l);
  if (w.mtp) add(w.mtp->layer);
  return out;
}

GreedyRun run(const LoadedCheckpoint& ck, const std::vector<int32_t>& prompt, int64_t steps) {
  ThreadPool pool(1);
  CpuBackend backend(pool);
  Model model(ck.config, ck.weights, backend);
  return run_greedy(model, prompt, {.decode_steps = steps});
}

// A packed checkpoint is not an input of cast or quantize: its packed tensors would be copied under
// a quantization_config that does not describe them (a checkpoint that does not load).
TEST(Int4Checkpoint, CastAndQuantizeRefuseAPackedInput) {
  test::TempDir tmp;
  const std::string dst = tmp.file("int4");
  quantize_to_packed({.in_dir = test::golden_dir("v3-tiny-bf16"), .out_dir = dst}, {});
  const auto refused = [&](const std::function<void()>& f, const std::string& what) {
    try {
      f();
      ADD_FAILURE() << what << " accepted a packed checkpoint";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("compressed-tensors packed weight"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(".weight_packed"), std::string::npos) << e.what();
    }
  };
  refused([&] { quantize_to_packed({.in_dir = dst, .out_dir = tmp.file("again")}, {}); }, "quantize --to int4");
  refused([&] { quantize_bf16_to_fp8({.in_dir = dst, .out_dir = tmp.file("fp8")}); }, "quantize --to fp8");
  refused([&] { cast_fp8_to_bf16({.in_dir = dst, .out_dir = tmp.file("bf16")}); }, "cast");
}

TEST(Int4Checkpoint, QuantizedGoldenReadsBackAndRuns) {
  test::TempDir tmp;
  const std::string src = test::golden_dir("v3-tiny-bf16"), dst = tmp.file("int4");
  const ConvertReport rep = quantize_to_packed({.in_dir = src, .out_dir = dst}, {});
  auto q = LoadedCheckpoint::load(dst, {.mtp = true});
  auto orig = LoadedCheckpoint::load(src, {.mtp = true});
  const auto q_experts = routed_experts(q->weights), o_experts = routed_experts(orig->weights);
  ASSERT_EQ(q_experts.size(), o_experts.size());
  ASSERT_TRUE(q->weights.mtp);  // the MTP layer's experts are packed too
  EXPECT_EQ(rep.n_converted, int64_t(3 * q_experts.size()));
  EXPECT_FALSE(q->weights.layers[1].moe.shared_experts->gate_proj.packed());  // Kimi's ignore list
  EXPECT_FALSE(q->weights.layers[1].self_attn.q_a_proj.packed());
  EXPECT_TRUE(q->weights.extra.empty());

  // Read back: within half a quantisation step of the original, plus what BF16 roundings add: the
  // scale absmax/7.5 rounded down makes the group's largest |w|/s up to 7.5 * (1 + 2^-8), which
  // clamps to 7 (0.53 steps), and the quotient w/s is rounded to BF16 (up to 2^-9 * 8 steps).
  double worst = 0;
  for (size_t e = 0; e < q_experts.size(); ++e)
    for (auto [qw, ow] : {std::pair{&q_experts[e]->gate_proj, &o_experts[e]->gate_proj},
                          std::pair{&q_experts[e]->up_proj, &o_experts[e]->up_proj},
                          std::pair{&q_experts[e]->down_proj, &o_experts[e]->down_proj}}) {
      ASSERT_TRUE(qw->packed()) << qw->name;
      ASSERT_EQ(qw->bits, 4);
      ASSERT_EQ(qw->group_size, 32);
      for (int64_t r = 0; r < qw->rows; ++r)
        for (int64_t c = 0; c < qw->cols; ++c) {
          const double s = bf16_to_f32(qw->weight_scale[r * qw->n_groups() + c / 32]);
          const double err = std::fabs(double(weight_at(*qw, r, c)) - double(weight_at(*ow, r, c)));
          ASSERT_LE(err, 0.55 * s) << qw->name << " " << r << "," << c;
          worst = std::max(worst, err / s);
        }
    }
  std::printf("read back: max |dequantised - original| = %.4f of its group's scale\n", worst);

  const auto pj = test::read_json(src + "/prompt7/prompt.json");
  const auto prompt = pj.at("tokens").get<std::vector<int32_t>>();
  const int64_t steps = pj.at("decode_steps").get<int64_t>();
  const GreedyRun r4 = run(*q, prompt, steps);

  // The same model with F32 copies of the dequantised experts: the same bits.
  auto f = LoadedCheckpoint::load(dst);
  std::vector<std::unique_ptr<std::vector<float>>> keep;
  for (MlpWeights* m : routed_experts(f->weights))
    for (Weight* w : {&m->gate_proj, &m->up_proj, &m->down_proj}) {
      auto v = std::make_unique<std::vector<float>>(size_t(w->rows * w->cols));
      for (int64_t r = 0; r < w->rows; ++r)
        for (int64_t c = 0; c < w->cols; ++c) (*v)[size_t(r * w->cols + c)] = weight_at(*w, r, c);
      *w = Weight{.name = w->name, .dtype = DType::F32, .rows = w->rows, .cols = w->cols, .data = v->data()};
      keep.push_back(std::move(v));
    }
  const GreedyRun rf = run(*f, prompt, steps);
  ASSERT_EQ(r4.logits.size(), rf.logits.size());
  EXPECT_EQ(std::memcmp(r4.logits.data(), rf.logits.data(), r4.logits.size() * 4), 0)
      << "int4 logits differ from the F32-dequantised model's by " << test::max_abs_diff(r4.logits, rf.logits);

  const GreedyRun rb = run(*orig, prompt, steps);
  // Rows whose inputs agree: the prefill row, and decode rows until the greedy tokens part.
  const size_t V = size_t(q->config.vocab_size);
  size_t rows = 1;
  while (rows < rb.tokens.size() && rb.tokens[rows - 1] == r4.tokens[rows - 1]) ++rows;
  float range = 0, diff = 0;
  double se = 0, ss = 0;
  for (size_t i = 0; i < rows * V; ++i) {
    range = std::max(range, std::fabs(rb.logits[i]));
    diff = std::max(diff, std::fabs(r4.logits[i] - rb.logits[i]));
    se += double(r4.logits[i] - rb.logits[i]) * double(r4.logits[i] - rb.logits[i]);
    ss += double(rb.logits[i]) * double(rb.logits[i]);
  }
  std::printf("int4 experts vs BF16 (v3-tiny-bf16, prompt7, %zu rows with the same inputs): max |logit diff| %.4g "
              "(max |logit| %.3g), RMS diff / RMS logit %.3g\n",
              rows, diff, range, std::sqrt(se / ss));
  std::printf("greedy BF16:");
  for (int32_t t : rb.tokens) std::printf(" %d", t);
  std::printf("\ngreedy int4:");
  for (int32_t t : r4.tokens) std::printf(" %d", t);
  std::printf("\n");
  // The golden's random weights are far from a trained model's (no outliers the scales must
  // cover, and 4 bits of a uniform-ish distribution): a loose sanity bound, the figure is reported.
  EXPECT_LT(std::sqrt(se / ss), 0.5);
  EXPECT_EQ(r4.tokens[0], rb.tokens[0]);
}

// Kimi-K2-Thinking: Kimi-K2-Instruct's config.json (tests/data/configs) with its sizes shrunk and
// the Thinking release's quantization_config, written in BF16 and packed by quantize_to_packed.
nlohmann::ordered_json kimi_thinking_small() {
  std::ifstream in("tests/data/configs/kimi-k2-instruct.json");
  auto c = nlohmann::ordered_json::parse(in);
  c["vocab_size"] = 512;
  c["hidden_size"] = 128;
  c["intermediate_size"] = 256;
  c["moe_intermediate_size"] = 64;
  c["num_hidden_layers"] = 2;
  c["num_attention_heads"] = 2;
  c["n_routed_experts"] = 8;
  c["num_experts_per_tok"] = 2;
  c["q_lora_rank"] = 64;
  c["kv_lora_rank"] = 32;
  c["qk_nope_head_dim"] = 16;
  c["qk_rope_head_dim"] = 16;
  c["v_head_dim"] = 16;
  c["bos_token_id"] = 0;
  c["eos_token_id"] = 1;
  return c;
}

std::string write_kimi(const test::TempDir& tmp) {
  const std::string bf16 = tmp.file("kimi-bf16"), out = tmp.file("kimi-int4");
  write_random_checkpoint(kimi_thinking_small(), {.out_dir = bf16, .fp8 = false, .seed = 3, .shards = 2});
  quantize_to_packed({.in_dir = bf16, .out_dir = out}, {});
  return out;
}

// Rewrites the shard of `dir` holding `name` through `edit` (which may change or drop tensors).
void edit_shard(const std::string& dir, const std::string& name,
                const std::function<void(std::vector<TensorToWrite>&)>& edit) {
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".safetensors") continue;
    std::vector<uint8_t> copy;
    {
      SafetensorsFile f(e.path().string());
      if (!f.find(name)) continue;
      std::vector<TensorToWrite> ts;
      size_t total = 0;
      for (const auto& t : f.tensors()) total += t.nbytes;
      copy.resize(total);
      size_t off = 0;
      for (const auto& t : f.tensors()) {
        std::memcpy(copy.data() + off, t.data, t.nbytes);
        ts.push_back({t.name, t.dtype, t.shape, {copy.data() + off, size_t(t.nbytes)}});
        off += t.nbytes;
      }
      edit(ts);
      const std::string tmp_path = e.path().string() + ".new";
      write_safetensors(tmp_path, std::move(ts));
      fs::rename(tmp_path, e.path());
    }
    return;
  }
  FAIL() << name << " not found";
}

TEST(Int4Checkpoint, KimiK2ThinkingLayoutLoadsAndRuns) {
  test::TempDir tmp;
  const std::string dir = write_kimi(tmp);
  const auto config = test::read_json(dir + "/config.json");
  // Kimi-K2-Thinking's published quantization_config (no MTP layer: its four ignore entries).
  EXPECT_EQ(config.at("quantization_config"), nlohmann::json::parse(R"({
    "config_groups": {"group_0": {"input_activations": null, "output_activations": null, "targets": ["Linear"],
      "weights": {"actorder": null, "block_structure": null, "dynamic": false, "group_size": 32, "num_bits": 4,
                  "observer": "minmax", "observer_kwargs": {}, "strategy": "group", "symmetric": true, "type": "int"}}},
    "format": "pack-quantized",
    "ignore": ["lm_head", "re:.*self_attn.*", "re:.*shared_experts.*", "re:.*mlp\\.(gate|up|gate_up|down)_proj.*"],
    "kv_cache_scheme": null, "quant_method": "compressed-tensors", "quantization_status": "compressed"})"));
  Checkpoint ck = Checkpoint::open(dir);
  const std::string e = "model.layers.1.mlp.experts.5.down_proj.";
  ASSERT_NE(ck.find(e + "weight_packed"), nullptr);
  EXPECT_EQ(ck.find(e + "weight_packed")->dtype, DType::I32);
  EXPECT_EQ(ck.find(e + "weight_packed")->shape, (std::vector<int64_t>{128, 8}));
  EXPECT_EQ(ck.find(e + "weight_scale")->dtype, DType::BF16);
  EXPECT_EQ(ck.find(e + "weight_scale")->shape, (std::vector<int64_t>{128, 2}));
  EXPECT_EQ(ck.find(e + "weight_shape")->dtype, DType::I64);
  EXPECT_EQ(ck.find(e + "weight"), nullptr);
  auto loaded = LoadedCheckpoint::load(dir);
  const GreedyRun r = run(*loaded, {5, 6, 7, 8}, 3);
  EXPECT_EQ(r.tokens.size(), 4u);
  for (float v : r.logits) ASSERT_TRUE(std::isfinite(v));
}

void expect_load_error(const std::string& dir, const std::string& part) {
  try {
    LoadedCheckpoint::load(dir);
    ADD_FAILURE() << "loaded; expected an error containing: " << part;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

TEST(Int4Checkpoint, WrongShapeOrMissingScaleIsAClearError) {
  test::TempDir tmp;
  const std::string dir = write_kimi(tmp);
  const std::string e = "model.layers.1.mlp.experts.5.down_proj.";
  const int64_t wrong[2] = {128, 96};
  edit_shard(dir, e + "weight_shape", [&](std::vector<TensorToWrite>& ts) {
    for (auto& t : ts)
      if (t.name == e + "weight_shape") t.bytes = {reinterpret_cast<const uint8_t*>(wrong), 16};
  });
  expect_load_error(dir, "tensor '" + e + "weight_shape' says [128, 96]; the config implies [128, 64]");

  const std::string dir2 = tmp.file("kimi-int4");  // rewritten below from a fresh quantisation
  fs::remove_all(dir2);
  quantize_to_packed({.in_dir = tmp.file("kimi-bf16"), .out_dir = dir2}, {});
  edit_shard(dir2, e + "weight_scale", [&](std::vector<TensorToWrite>& ts) {
    std::erase_if(ts, [&](const TensorToWrite& t) { return t.name == e + "weight_scale"; });
  });
  // The index still lists it: drop it there too, as a checkpoint without the tensor would.
  auto index = test::read_json(dir2 + "/model.safetensors.index.json");
  index["weight_map"].erase(e + "weight_scale");
  std::ofstream(dir2 + "/model.safetensors.index.json") << index.dump();
  expect_load_error(dir2, "tensor '" + e + "weight_scale' is missing; packed weight '" + e + "weight_packed' needs its scales");

  // A config that does not say how it is packed.
  auto config = test::read_json(dir2 + "/config.json");
  config.erase("quantization_config");
  std::ofstream(dir2 + "/config.json") << config.dump();
  expect_load_error(dir2, "is packed, but config.json's quantization_config is not compressed-tensors");
}

}  // namespace
}  // namespace dsv3
