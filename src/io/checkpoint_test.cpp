#include "io/checkpoint.h"

#include <gtest/gtest.h>

#include "base/error.h"
#include "io/json_file.h"
#include "io/safetensors_writer.h"
#include "io/test_files.h"

namespace dsv3 {
namespace {

void expect_error(const std::string& dir, std::initializer_list<std::string> fragments) {
  try {
    Checkpoint::open(dir);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    for (const auto& f : fragments) EXPECT_NE(std::string(e.what()).find(f), std::string::npos) << e.what();
  }
}

// Two shards holding a, b and c; the index as given.
void make_sharded(const test::TempDir& d, const std::string& index) {
  const std::vector<uint8_t> bytes(8, 1);
  write_text_file(d.file("config.json"), "{}");
  write_safetensors(d.file("s1.safetensors"), {{"a", DType::F32, {2}, bytes}, {"b", DType::F32, {2}, bytes}});
  write_safetensors(d.file("s2.safetensors"), {{"c", DType::BF16, {4}, bytes}});
  write_text_file(d.file("model.safetensors.index.json"), index);
}

TEST(Checkpoint, OpensShardsThroughTheIndex) {
  test::TempDir d;
  make_sharded(d, R"({"weight_map": {"a": "s1.safetensors", "b": "s1.safetensors", "c": "s2.safetensors"}})");
  const Checkpoint c = Checkpoint::open(d.path());
  EXPECT_EQ(c.shards().size(), 2u);
  ASSERT_NE(c.find("c"), nullptr);
  EXPECT_EQ(c.find("c")->dtype, DType::BF16);
  EXPECT_EQ(c.tensors().size(), 3u);
  EXPECT_EQ(c.total_bytes(), 24u);
}

TEST(Checkpoint, OpensTheGoldenCheckpoints) {
  for (const char* name : {"v3-tiny-fp8", "v3-tiny-bf16", "v2-lite-tiny-bf16"}) {
    const Checkpoint c = Checkpoint::open(std::string("tests/data/golden/") + name);
    EXPECT_NE(c.find("model.embed_tokens.weight"), nullptr) << name;
  }
}

TEST(Checkpoint, IndexProblems) {
  {
    test::TempDir d;
    make_sharded(d, R"({"weight_map": {"a": "s1.safetensors", "b": "s1.safetensors", "c": "s3.safetensors"}})");
    expect_error(d.path(), {"s3.safetensors", "does not exist"});
  }
  {
    test::TempDir d;
    make_sharded(d, R"({"weight_map": {"a": "s1.safetensors", "b": "s1.safetensors", "c": "s1.safetensors"}})");
    expect_error(d.path(), {"'c'", "s1.safetensors", "no such tensor"});
  }
  {
    test::TempDir d;
    make_sharded(d, R"({"weight_map": {"a": "s1.safetensors", "c": "s2.safetensors"}})");
    expect_error(d.path(), {"'b'", "not listed"});
  }
  {
    test::TempDir d;
    make_sharded(d, R"({"weight_map": [1]})");
    expect_error(d.path(), {"weight_map"});
  }
  {
    test::TempDir d;
    make_sharded(d, R"({"weight_map": )");
    expect_error(d.path(), {"model.safetensors.index.json", "invalid JSON"});
  }
}

TEST(Checkpoint, MissingPieces) {
  expect_error("/nonexistent/model", {"/nonexistent/model", "does not exist"});
  test::TempDir d;
  expect_error(d.path(), {"no config.json"});
  write_text_file(d.file("config.json"), "{}");
  expect_error(d.path(), {"neither model.safetensors.index.json nor model.safetensors"});
}

}  // namespace
}  // namespace dsv3
