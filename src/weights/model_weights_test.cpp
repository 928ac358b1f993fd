#include "weights/model_weights.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <map>

#include "base/error.h"
#include "io/json_file.h"
#include "io/safetensors_writer.h"
#include "io/test_files.h"
#include "weights/loaded_checkpoint.h"
#include "base/page_residency.h"
#include "io/prefetch.h"

namespace dsv3 {
namespace {

struct Tensor {
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};
using Tensors = std::map<std::string, Tensor>;

Tensors read_all(const std::string& dir) {
  const Checkpoint c = Checkpoint::open(dir);
  Tensors out;
  for (const auto* t : c.tensors()) out[t->name] = {t->dtype, t->shape, {t->data, t->data + t->nbytes}};
  return out;
}

// The golden v3-tiny-fp8 checkpoint, changed by `mutate`, written as one model.safetensors.
std::string mutated(const test::TempDir& d, const std::function<void(Tensors&)>& mutate,
                    const std::string& source = "tests/data/golden/v3-tiny-fp8") {
  Tensors t = read_all(source);
  mutate(t);
  std::vector<TensorToWrite> w;
  for (const auto& [name, x] : t) w.push_back({name, x.dtype, x.shape, x.bytes});
  write_safetensors(d.file("model.safetensors"), w);
  write_text_file(d.file("config.json"), read_text_file(source + "/config.json"));
  return d.path();
}

void expect_error(const std::string& dir, std::initializer_list<std::string> fragments) {
  try {
    LoadedCheckpoint::load(dir, {.mtp = true});
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    for (const auto& f : fragments) EXPECT_NE(std::string(e.what()).find(f), std::string::npos) << e.what();
  }
}

const std::string kKvB = "model.layers.1.self_attn.kv_b_proj.weight";

TEST(ModelWeights, BindsTheGoldenCheckpoints) {
  auto fp8 = LoadedCheckpoint::load("tests/data/golden/v3-tiny-fp8", {.mtp = true});
  EXPECT_EQ(fp8->weights.layers.size(), 3u);
  EXPECT_TRUE(fp8->weights.mtp.has_value());
  EXPECT_TRUE(fp8->weights.extra.empty());
  EXPECT_EQ(fp8->weights.layers[1].self_attn.kv_b_proj.dtype, DType::F8_E4M3);
  EXPECT_NE(fp8->weights.layers[1].self_attn.kv_b_proj.scale_inv, nullptr);
  EXPECT_FALSE(fp8->weights.layers[0].is_moe);
  EXPECT_EQ(fp8->weights.layers[1].moe.experts.size(), 16u);
  // The BF16 cast still carries quantization_config: dtype decides, per tensor.
  auto bf16 = LoadedCheckpoint::load("tests/data/golden/v3-tiny-bf16");
  EXPECT_EQ(bf16->weights.layers[1].self_attn.kv_b_proj.dtype, DType::BF16);
  EXPECT_EQ(bf16->weights.layers[1].self_attn.kv_b_proj.scale_inv, nullptr);
  auto v2 = LoadedCheckpoint::load("tests/data/golden/v2-lite-tiny-bf16");
  EXPECT_FALSE(v2->weights.mtp.has_value());
  EXPECT_TRUE(v2->weights.layers[0].self_attn.q_proj.present());
}

TEST(ModelWeights, MissingTensor) {
  test::TempDir d;
  expect_error(mutated(d, [](Tensors& t) { t.erase("model.layers.2.mlp.experts.7.up_proj.weight"); }),
               {"'model.layers.2.mlp.experts.7.up_proj.weight' is missing", "[64, 192]"});
}

TEST(ModelWeights, ShapeMismatch) {
  test::TempDir d;
  expect_error(mutated(d, [](Tensors& t) { t[kKvB].shape = {64, 256}; }),
               {kKvB, "has shape [64, 256]", "implies [256, 64]"});
}

TEST(ModelWeights, DtypeMismatch) {
  test::TempDir d;
  expect_error(mutated(d,
                       [](Tensors& t) {
                         auto& n = t["model.norm.weight"];
                         n.dtype = DType::I16;
                       }),
               {"'model.norm.weight'", "dtype I16", "expected BF16, F16 or F32"});
}

TEST(ModelWeights, Fp8WithoutScale) {
  test::TempDir d;
  expect_error(mutated(d, [](Tensors& t) { t.erase(kKvB + "_scale_inv"); }),
               {kKvB, "F8_E4M3", "_scale_inv' is missing"});
}

TEST(ModelWeights, ScaleOfWrongShape) {
  test::TempDir d;
  expect_error(mutated(d,
                       [](Tensors& t) {
                         auto& s = t[kKvB + "_scale_inv"];
                         s.shape = {s.shape[1], s.shape[0]};
                       }),
               {kKvB + "_scale_inv", "expected [2, 1]"});
}

TEST(ModelWeights, ScaleThatIsNotFinite) {
  for (const float bad : {std::nanf(""), -INFINITY}) {
    test::TempDir d;
    expect_error(mutated(d,
                         [&](Tensors& t) {
                           auto& s = t[kKvB + "_scale_inv"];
                           std::memcpy(s.bytes.data() + 4, &bad, 4);  // block [1, 0]
                         }),
                 {kKvB + "_scale_inv", "at block [1, 0]", "must be finite"});
  }
}

TEST(ModelWeights, ExtraTensorsAreReportedNotFatal) {
  test::TempDir d;
  auto lc = LoadedCheckpoint::load(mutated(d, [](Tensors& t) {
    t["model.layers.0.self_attn.rotary_emb.inv_freq"] = {DType::F32, {2}, std::vector<uint8_t>(8, 0)};
  }));
  EXPECT_EQ(lc->weights.extra, std::vector<std::string>{"model.layers.0.self_attn.rotary_emb.inv_freq"});
}

TEST(ModelWeights, MtpLayerMayBeAbsentButNotPartial) {
  test::TempDir d;
  auto lc = LoadedCheckpoint::load(mutated(d, [](Tensors& t) {
    std::erase_if(t, [](const auto& kv) { return kv.first.rfind("model.layers.3.", 0) == 0; });
  }), {.mtp = true});
  EXPECT_FALSE(lc->weights.mtp.has_value());
  test::TempDir d2;
  expect_error(mutated(d2, [](Tensors& t) { t.erase("model.layers.3.enorm.weight"); }),
               {"'model.layers.3.enorm.weight' is missing"});
}

bool is_mtp(const std::string& name) { return name.rfind("model.layers.3.", 0) == 0; }  // v3-tiny: 3 layers

// Plain decoding never reads the MTP layer: by default it is not bound (no model.mtp, no cache
// layer for it), and not reported as extra either (it is skipped on purpose).
TEST(ModelWeights, MtpLayerIsBoundOnlyWhenAsked) {
  const auto plain = LoadedCheckpoint::load("tests/data/golden/v3-tiny-fp8");
  EXPECT_FALSE(plain->weights.mtp.has_value());
  EXPECT_TRUE(plain->weights.extra.empty());
  uint64_t bound = 0, mtp = 0, all = 0;
  for (const TensorInfo* t : plain->bound_tensors()) {
    EXPECT_FALSE(is_mtp(t->name)) << t->name;
    bound += t->nbytes;
  }
  for (const TensorInfo* t : plain->checkpoint.tensors()) {
    all += t->nbytes;
    if (is_mtp(t->name)) mtp += t->nbytes;
  }
  EXPECT_GT(mtp, 0u);
  EXPECT_EQ(bound, all - mtp);  // every other tensor (weights and scales) is bound
  const auto with = LoadedCheckpoint::load("tests/data/golden/v3-tiny-fp8", {.mtp = true});
  EXPECT_TRUE(with->weights.mtp.has_value());
  EXPECT_EQ(with->bound_tensors().size(), with->checkpoint.tensors().size());
}

// Prefetching what is bound leaves the MTP layer's pages (1.66 MB of the 4.2 MB checkpoint, one
// contiguous range) out of this process: only fault-around at its edge (16 pages) may show.
TEST(ModelWeights, PrefetchOfTheBoundTensorsLeavesTheMtpLayerUntouched) {
  auto resident = [](const LoadedCheckpoint& lc, bool mtp_part) {
    uint64_t r = 0, n = 0;
    for (const TensorInfo* t : lc.checkpoint.tensors()) {
      if (is_mtp(t->name) != mtp_part) continue;
      r += resident_bytes(t->data, t->nbytes).value_or(0);
      n += t->nbytes;
    }
    return double(r) / double(n);
  };
  const auto plain = LoadedCheckpoint::load("tests/data/golden/v3-tiny-fp8");
  if (!resident_bytes(plain.get(), 1)) GTEST_SKIP() << "/proc/self/pagemap is not readable here";
  prefetch_tensors(plain->bound_tensors(), nullptr, nullptr);
  EXPECT_GT(resident(*plain, false), 0.95);
  EXPECT_LT(resident(*plain, true), 0.1);
  const auto with = LoadedCheckpoint::load("tests/data/golden/v3-tiny-fp8", {.mtp = true});
  prefetch_tensors(with->bound_tensors(), nullptr, nullptr);
  EXPECT_GT(resident(*with, true), 0.95);
}

}  // namespace
}  // namespace dsv3
