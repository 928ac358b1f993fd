#include "convert/convert.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "base/dtype.h"
#include "base/error.h"
#include "io/checkpoint.h"
#include "io/json_file.h"
#include "weights/loaded_checkpoint.h"

namespace dsv3 {
namespace {

namespace fs = std::filesystem;

const std::string kGolden = "tests/data/golden/";

fs::path temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("dsv3_convert_test_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(p);
  return p;
}

// The golden checkpoint `name`'s files copied into `dir` (created), for tests that change them.
void copy_golden(const std::string& name, const fs::path& dir) {
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(kGolden + name))
    if (e.is_regular_file()) fs::copy_file(e.path(), dir / e.path().filename());
}

float element(const TensorInfo& t, int64_t i) {
  switch (t.dtype) {
    case DType::BF16: {
      uint16_t b;
      std::memcpy(&b, t.data + 2 * i, 2);
      return bf16_to_f32(b);
    }
    case DType::F32: {
      float f;
      std::memcpy(&f, t.data + 4 * i, 4);
      return f;
    }
    default: ADD_FAILURE() << "unexpected dtype"; return 0;
  }
}

TEST(Cast, EqualsDeepSeeksCastOfTheGoldenCheckpoint) {
  const fs::path out = temp_dir("cast");
  ThreadPool pool(2);
  const ConvertReport r = cast_fp8_to_bf16({.in_dir = kGolden + "v3-tiny-fp8", .out_dir = out.string(), .pool = &pool});
  EXPECT_GT(r.n_converted, 0);
  EXPECT_TRUE(r.warnings.empty());

  // Tensor for tensor: names, dtypes, shapes, bytes.
  const Checkpoint want = Checkpoint::open(kGolden + "v3-tiny-bf16");
  const Checkpoint got = Checkpoint::open(out.string());
  ASSERT_EQ(got.tensors().size(), want.tensors().size());
  for (const TensorInfo* w : want.tensors()) {
    const TensorInfo* g = got.find(w->name);
    ASSERT_NE(g, nullptr) << w->name;
    EXPECT_EQ(g->dtype, w->dtype) << w->name;
    EXPECT_EQ(g->shape, w->shape) << w->name;
    ASSERT_EQ(g->nbytes, w->nbytes) << w->name;
    EXPECT_EQ(std::memcmp(g->data, w->data, w->nbytes), 0) << w->name;
    EXPECT_EQ(fs::path(*g->file).filename(), fs::path(*w->file).filename()) << w->name;
  }
  // The shards and the index are byte for byte what the official script writes.
  for (const auto* f : {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                        "model.safetensors.index.json"})
    EXPECT_EQ(read_text_file((out / f).string()), read_text_file(kGolden + "v3-tiny-bf16/" + f)) << f;
  // Unlike the official script, a usable config.json: no quantization_config, the rest kept.
  nlohmann::json config = read_json_file((out / "config.json").string());
  EXPECT_FALSE(config.contains("quantization_config"));
  nlohmann::json src = read_json_file(kGolden + "v3-tiny-fp8/config.json");
  src.erase("quantization_config");
  EXPECT_EQ(config, src);
  EXPECT_NO_THROW(LoadedCheckpoint::load(out.string()));
  fs::remove_all(out);
}

TEST(Cast, CopiesTokenizerFilesAndReportsProgress) {
  const fs::path in = temp_dir("cast_in"), out = temp_dir("cast_tok");
  copy_golden("v3-tiny-fp8", in);
  write_text_file((in / "tokenizer.json").string(), "{}");
  write_text_file((in / "tokenizer_config.json").string(), "{}");
  int64_t calls = 0, last_done = 0, total = 0;
  const ConvertReport r = cast_fp8_to_bf16({.in_dir = in.string(), .out_dir = out.string(), .progress = [&](const ConvertProgress& p) {
                                              ++calls;
                                              EXPECT_GE(p.tensors_done, last_done);
                                              last_done = p.tensors_done;
                                              total = p.tensors_total;
                                            }});
  EXPECT_EQ(r.copied, (std::vector<std::string>{"tokenizer.json", "tokenizer_config.json"}));
  EXPECT_TRUE(fs::exists(out / "tokenizer.json"));
  EXPECT_GT(calls, 0);
  EXPECT_EQ(last_done, total);
  fs::remove_all(in);
  fs::remove_all(out);
}

TEST(Cast, RefusesToOverwriteItsInputAndMissingDirectories) {
  EXPECT_THROW(cast_fp8_to_bf16({.in_dir = kGolden + "v3-tiny-fp8", .out_dir = kGolden + "v3-tiny-fp8"}), Error);
  try {
    cast_fp8_to_bf16({.in_dir = "/nonexistent/model", .out_dir = "/tmp/x"});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/model"), std::string::npos);
  }
}

// cast copied an index that named a shard which does not exist (or a path outside the directory)
// into its output, which then failed to load; the loader refuses such an index, so cast does too.
TEST(Cast, RefusesAnIndexThatNamesTheWrongShard) {
  const fs::path in = temp_dir("cast_bad_index"), out = temp_dir("cast_bad_index_out");
  copy_golden("v3-tiny-fp8", in);
  const std::string index_path = (in / "model.safetensors.index.json").string();
  const nlohmann::json index = read_json_file(index_path);
  const std::string name = index["weight_map"].begin().key();
  for (const std::string bad : {"model-00009-of-00009.safetensors", "../../../../etc/passwd"}) {
    nlohmann::json broken = index;
    broken["weight_map"][name] = bad;
    write_text_file(index_path, broken.dump());
    try {
      cast_fp8_to_bf16({.in_dir = in.string(), .out_dir = out.string()});
      ADD_FAILURE() << "cast accepted an index naming '" << bad << "'";
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("lists tensor '" + name + "' in '" + bad + "', but it is in 'model-0000"), std::string::npos) << m;
    }
    EXPECT_FALSE(fs::exists(out / "model.safetensors.index.json"));
  }
  fs::remove_all(in);
  fs::remove_all(out);
}

// quantize copied a config.json the loader refuses (num_attention_heads 0) and exited 0.
TEST(Quantize, RefusesAConfigTheLoaderRefuses) {
  const fs::path in = temp_dir("quantize_bad_config"), out = temp_dir("quantize_bad_config_out");
  copy_golden("v3-tiny-bf16", in);
  nlohmann::json config = read_json_file((in / "config.json").string());
  config["num_attention_heads"] = 0;
  write_text_file((in / "config.json").string(), config.dump());
  try {
    quantize_bf16_to_fp8({.in_dir = in.string(), .out_dir = out.string()});
    ADD_FAILURE() << "quantize accepted num_attention_heads 0";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'num_attention_heads' is 0"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(out / "config.json"));
  fs::remove_all(in);
  fs::remove_all(out);
}

TEST(Quantize, ThenCastStaysWithinFp8Rounding) {
  const fs::path q = temp_dir("quant"), back = temp_dir("quant_back");
  ThreadPool pool(2);
  const std::string src_dir = kGolden + "v2-lite-tiny-bf16";
  const ConvertReport rq = quantize_bf16_to_fp8({.in_dir = src_dir, .out_dir = q.string(), .pool = &pool});
  EXPECT_GT(rq.n_converted, 0);
  EXPECT_TRUE(read_json_file((q / "config.json").string()).contains("quantization_config"));
  // The FP8 checkpoint loads (every linear weight has its scale, the index lists them).
  EXPECT_NO_THROW(LoadedCheckpoint::load(q.string()));
  const ConvertReport rc = cast_fp8_to_bf16({.in_dir = q.string(), .out_dir = back.string(), .pool = &pool});
  EXPECT_EQ(rc.n_converted, rq.n_converted);

  const Checkpoint src = Checkpoint::open(src_dir);
  const Checkpoint qc = Checkpoint::open(q.string());
  const Checkpoint out = Checkpoint::open(back.string());
  ASSERT_EQ(out.tensors().size(), src.tensors().size());
  for (const TensorInfo* s : src.tensors()) {
    const TensorInfo* g = out.find(s->name);
    ASSERT_NE(g, nullptr) << s->name;
    ASSERT_EQ(g->shape, s->shape);
    if (!is_fp8_linear_name(s->name)) {
      ASSERT_EQ(g->nbytes, s->nbytes);
      EXPECT_EQ(std::memcmp(g->data, s->data, s->nbytes), 0) << s->name << " should be copied unchanged";
      continue;
    }
    ASSERT_EQ(qc.find(s->name)->dtype, DType::F8_E4M3) << s->name;
    const TensorInfo& scale = *qc.find(s->name + "_scale_inv");
    const int64_t cols = s->shape[1], sc = (cols + 127) / 128;
    for (int64_t i = 0; i < s->numel(); ++i) {
      const float x = element(*s, i), y = element(*g, i);
      const float block_scale = element(scale, (i / cols / 128) * sc + (i % cols) / 128);
      // e4m3 keeps 3 mantissa bits (relative error <= 2^-4 for normals); below its smallest
      // normal (2^-6) the spacing is 2^-9, so half a step is 2^-10 in scaled units; the cast
      // back rounds once more to bf16 (relative 2^-9).
      const float bound = std::fabs(x) * (1.0f / 16 + 1.0f / 256) + block_scale / 1024 * 1.01f;
      ASSERT_LE(std::fabs(x - y), bound) << s->name << " element " << i;
    }
  }
  fs::remove_all(q);
  fs::remove_all(back);
}

TEST(Quantize, RefusesAnFp8Checkpoint) {
  const fs::path out = temp_dir("quant_fp8");
  try {
    quantize_bf16_to_fp8({.in_dir = kGolden + "v3-tiny-fp8", .out_dir = out.string()});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("already FP8"), std::string::npos) << e.what();
  }
  fs::remove_all(out);
}

}  // namespace
}  // namespace dsv3
