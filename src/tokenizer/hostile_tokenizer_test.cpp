// Issue 19: hostile tokenizer.json / tokenizer_config.json contents fail with an Error naming
// the file and the field (never an escaping nlohmann exception, bad_alloc or stack overflow).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace dsv3 {
namespace {

using nlohmann::json;

// The 256 byte tokens and nothing else: the smallest tokenizer.json we load.
json bytes_only() {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) {
    std::string s;
    append_utf8(s, byte_level_char(static_cast<unsigned char>(b)));
    vocab[s] = b;
  }
  return {{"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}}},
          {"decoder", {{"type", "ByteLevel"}}},
          {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array()}}}};
}

// Loading must throw Error (not another exception) containing every fragment.
void expect_error(const json& j, std::initializer_list<std::string> fragments) {
  try {
    Tokenizer::from_json(j, TokenizerConfig{}, "tok.json");
    ADD_FAILURE() << "no error; wanted " << *fragments.begin();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("tok.json"), std::string::npos) << msg;
    for (const auto& f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << msg;
  }
}

TEST(HostileTokenizer, MinimalFileLoads) { EXPECT_EQ(Tokenizer::from_json(bytes_only(), {}, "t").vocab_size(), 256); }

TEST(HostileTokenizer, WrongJsonTypes) {
  json j = bytes_only();
  j["normalizer"] = {{"type", 5}};
  expect_error(j, {"normalizer", "'type' must be a string, got 5"});
  j = bytes_only();
  j["model"]["dropout"] = "0.1";
  expect_error(j, {"model", "'dropout' must be a number, got \"0.1\""});
  j = bytes_only();
  j["model"]["type"] = json::array();
  expect_error(j, {"model", "'type' must be a string"});
  j = bytes_only();
  j["decoder"] = {{"type", 5}};
  expect_error(j, {"decoder", "'type' must be a string"});
  j = bytes_only();
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", 5}};
  expect_error(j, {"pre_tokenizer", "'behavior' must be a string"});
}

// A token id of 2^31 - 1 made the decode table ask for 64 GiB (bad_alloc, or the OOM killer).
TEST(HostileTokenizer, HugeTokenIds) {
  json j = bytes_only();
  j["model"]["vocab"]["big"] = 2147483647;
  expect_error(j, {"model.vocab['big']", "2147483647", "4194303"});
  j = bytes_only();
  j["added_tokens"] = json::array({{{"id", 2147483647}, {"content", "<x>"}}});
  expect_error(j, {"added_tokens[0].id", "2147483647"});
  // 2^32 + 5 was narrowed to id 5 by get<int32_t>().
  j = bytes_only();
  j["added_tokens"] = json::array({{{"id", 4294967301ll}, {"content", "<x>"}}});
  expect_error(j, {"added_tokens[0].id", "4294967301"});
}

class TempModelDir {
 public:
  TempModelDir() : path_(std::filesystem::temp_directory_path() / ("dsv3-hostile-tok-" + std::to_string(::getpid()))) {
    std::filesystem::create_directories(path_);
  }
  ~TempModelDir() { std::filesystem::remove_all(path_); }
  void write(const std::string& name, const std::string& text) const { std::ofstream(path_ / name) << text; }
  std::string dir() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

std::string load_error(const TempModelDir& d) {
  try {
    Tokenizer::load(d.dir());
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(HostileTokenizer, FilesWithHugeNumbersOrDeepNesting) {
  TempModelDir d;
  d.write("tokenizer.json", bytes_only().dump());
  d.write("tokenizer_config.json", R"({"model_max_length": 1e999})");
  std::string msg = load_error(d);
  EXPECT_NE(msg.find("tokenizer_config.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("invalid JSON"), std::string::npos) << msg;

  d.write("tokenizer_config.json", "{}");
  json j = bytes_only();
  d.write("tokenizer.json", j.dump().substr(0, j.dump().size() - 1) + R"(, "post_processor": )" +
                                std::string(1000000, '[') + std::string(1000000, ']') + "}");
  msg = load_error(d);
  EXPECT_NE(msg.find("tokenizer.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("deeper than 256"), std::string::npos) << msg;
}

}  // namespace
}  // namespace dsv3
