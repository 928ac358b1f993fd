#include "io/json_input.h"

#include <sys/stat.h>

#include <gtest/gtest.h>

#include "base/error.h"
#include "io/generation_config.h"
#include "io/json_file.h"
#include "io/test_files.h"

namespace dsv3 {
namespace {

// Python's json.loads accepts a lone surrogate escape and Hugging Face encodes it as U+FFFD;
// nlohmann rejected the whole document.
TEST(JsonInput, LoneSurrogatesBecomeReplacementCharacters) {
  EXPECT_EQ(replace_lone_surrogates(R"("a\ud800b")"), R"("a\ufffdb")");
  EXPECT_EQ(replace_lone_surrogates(R"("\udc00")"), R"("\ufffd")");
  EXPECT_EQ(replace_lone_surrogates(R"("\uD83D\uDE00")"), R"("\uD83D\uDE00")");  // a pair stays
  EXPECT_EQ(replace_lone_surrogates(R"("\ud83d\ud83d\ude00")"), R"("\ufffd\ud83d\ude00")");
  EXPECT_EQ(replace_lone_surrogates(R"("\\ud800")"), R"("\\ud800")");  // an escaped backslash, then text
  EXPECT_EQ(replace_lone_surrogates(R"("\ud800)"), R"("\ufffd)");
  EXPECT_EQ(parse_user_json(R"(["x\ud800"])", "f")[0].get<std::string>(), "x\xEF\xBF\xBD");
  try {
    parse_user_json("[1,", "prompts.jsonl:3");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("prompts.jsonl:3: invalid JSON"), std::string::npos) << e.what();
  }
}

// config.json, the index, the tokenizer files and chat templates are read whole: a FIFO blocked the
// read forever, and /dev/zero or a sparse file of 50 GB was read until memory ran out.
TEST(TextFile, RefusesWhatIsNotARegularFileAndWhatIsTooLarge) {
  test::TempDir dir;
  auto error_of = [](const std::string& path, int64_t max_bytes) -> std::string {
    try {
      read_text_file(path, max_bytes);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  const std::string fifo = dir.file("config.json");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  for (const std::string& p : {fifo, dir.path(), std::string("/dev/zero")}) {
    const std::string e = error_of(p, kMaxTextFileBytes);
    EXPECT_NE(e.find("'" + p + "' is not a regular file"), std::string::npos) << e;
  }
  const std::string big = dir.file("tokenizer.json");
  test::write_file(big, std::string(100, 'x'));
  const std::string e = error_of(big, 99);
  EXPECT_NE(e.find("'" + big + "' is 100 bytes"), std::string::npos) << e;
  EXPECT_EQ(read_text_file(big, 100), std::string(100, 'x'));
  EXPECT_NE(error_of(dir.file("absent.json"), 100).find("cannot open"), std::string::npos);
  test::write_file(dir.file("empty.json"), "");
  EXPECT_EQ(read_text_file(dir.file("empty.json")), "");
}

TEST(GenerationConfig, ReadsTheSamplingDefaultsAndEos) {
  // DeepSeek-V3's generation_config.json (huggingface.co/deepseek-ai/DeepSeek-V3).
  const auto g = GenerationConfig::from_json(
      {{"_from_model_config", true}, {"bos_token_id", 0}, {"eos_token_id", 1}, {"do_sample", true},
       {"temperature", 0.6}, {"top_p", 0.95}, {"transformers_version", "4.46.3"}},
      "generation_config.json");
  EXPECT_EQ(g.temperature, 0.6);
  EXPECT_EQ(g.top_p, 0.95);
  EXPECT_EQ(g.do_sample, true);
  EXPECT_EQ(g.eos_token_ids, std::vector<int64_t>{1});
  EXPECT_FALSE(g.top_k);
  const auto k = GenerationConfig::from_json({{"eos_token_id", {163585, 163586}}, {"max_new_tokens", 64}}, "g");
  EXPECT_EQ(k.eos_token_ids, (std::vector<int64_t>{163585, 163586}));
  EXPECT_EQ(k.max_new_tokens, 64);
  auto error = [](const nlohmann::json& j) {
    try {
      GenerationConfig::from_json(j, "m/generation_config.json");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(error({{"top_p", 1.5}}), "m/generation_config.json: 'top_p' is 1.5; expected a value in [0, 1]");
  EXPECT_EQ(error({{"do_sample", "yes"}}), "m/generation_config.json: 'do_sample' must be true or false, got \"yes\"");
  EXPECT_EQ(error({{"top_k", -1}}), "m/generation_config.json: 'top_k' is -1; expected >= 0");
  EXPECT_EQ(error({{"eos_token_id", {1, "x"}}}), "m/generation_config.json: 'eos_token_id' must be an integer, got \"x\"");
}

}  // namespace
}  // namespace dsv3
