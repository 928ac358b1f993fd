// Issue 19 through the binary: hostile and careless checkpoint files, tokenizer files, chat
// templates and template variables, fed to info, logits, tokenize, template and chat. Every one
// must exit 2 within 5 seconds with a message naming the file and the field or limit: never a
// crash, a hang, NaN logits or exit 0.
#include <gtest/gtest.h>

#include <sys/resource.h>

#include <chrono>
#include <filesystem>
#include <functional>

#include "io/json_file.h"
#include "io/test_files.h"
#include "tests/cli_util.h"

namespace dsv3 {
namespace {

using nlohmann::json;

const std::string kFp8 = "tests/data/golden/v3-tiny-fp8";

// The issue asks for a refusal within 5 s; sanitizer builds run several times slower.
#if defined(__SANITIZE_ADDRESS__)
constexpr double kSeconds = 25.0;
#else
constexpr double kSeconds = 5.0;
#endif

std::string repeat(const std::string& s, int n) {
  std::string out;
  out.reserve(s.size() * size_t(n));
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

void expect_refused(const std::string& args, std::initializer_list<std::string> fragments,
                    const std::string& stdin_text = "") {
  // CPU time of the command (its process and the shell that runs it), which a loaded machine does
  // not inflate; the wall clock only catches a hang (a process that sleeps uses no CPU).
  const auto cpu = [] {
    rusage u{};
    getrusage(RUSAGE_CHILDREN, &u);
    return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * double(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
  };
  const double cpu0 = cpu();
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = test::run_dsv3(args, stdin_text);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double cpu_seconds = cpu() - cpu0;
  EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
  for (const auto& f : fragments) EXPECT_NE(r.output.find(f), std::string::npos) << args << "\n" << r.output;
  EXPECT_LT(cpu_seconds, kSeconds) << args;
  EXPECT_LT(seconds, 10 * kSeconds) << args;
}

// The 256 byte tokens (GPT-2's byte-to-character map): the smallest tokenizer.json we load.
json tiny_tokenizer() {
  json vocab = json::object();
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    const int cp = printable ? b : next++;
    std::string s;
    if (cp < 0x80) {
      s += char(cp);
    } else {
      s += char(0xC0 | (cp >> 6));
      s += char(0x80 | (cp & 0x3F));
    }
    vocab[s] = b;
  }
  return {{"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}}},
          {"decoder", {{"type", "ByteLevel"}}},
          {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array()}}}};
}

// A copy of the golden FP8 checkpoint plus tokenizer files, for one test to damage.
struct Model {
  test::TempDir d;
  Model() {
    for (const auto& e : std::filesystem::directory_iterator(kFp8))
      if (e.is_regular_file()) std::filesystem::copy_file(e.path(), d.file(e.path().filename().string()));
    write_text_file(d.file("tokenizer.json"), tiny_tokenizer().dump());
    set_template("{% for m in messages %}{{ m.content }}{% endfor %}");
  }
  std::string dir() const { return d.path(); }
  json config() const { return read_json_file(d.file("config.json")); }
  void write(const std::string& name, const std::string& text) const { write_text_file(d.file(name), text); }
  void set_template(const std::string& src) const {
    write("tokenizer_config.json", json{{"chat_template", src}, {"eos_token", "!"}}.dump());
  }
};

TEST(HostileCli, ConfigValues) {
  const std::vector<std::pair<std::function<void(json&)>, std::string>> cases = {
      {[](json& c) { c["rope_theta"] = 0; }, "rope_theta must be greater than 1, got 0"},
      {[](json& c) { c["rope_theta"] = -10000; }, "rope_theta must be greater than 1, got -10000"},
      {[](json& c) { c["rope_scaling"]["beta_fast"] = -32; }, "'rope_scaling.beta_fast' is -32"},
      {[](json& c) { c["routed_scaling_factor"] = 1e308; }, "'routed_scaling_factor' is 1e+308"},
      {[](json& c) { c["rms_norm_eps"] = 1e308; }, "'rms_norm_eps' is 1e+308"},
      {[](json& c) { c["hidden_size"] = 1e300; }, "'hidden_size' is 1e+300"},
      {[](json& c) { c["num_hidden_layers"] = int64_t(1000000000000); }, "'num_hidden_layers' is 1000000000000"},
      {[](json& c) { c["n_routed_experts"] = int64_t(1000000000000); }, "'n_routed_experts' is 1000000000000"},
      {[](json& c) { c["vocab_size"] = int64_t(1) << 62; }, "'vocab_size' is 4611686018427387904"},
      {[](json& c) { c["intermediate_size"] = 9223372036854775807ll; }, "'intermediate_size'"},
      {[](json& c) { c["max_position_embeddings"] = 0; }, "'max_position_embeddings' is 0"},
      {[](json& c) { c["rope_scaling"]["type"] = 5; }, "rope_scaling.type must be a string, got 5"},
      {[](json& c) { c["rope_scaling"]["factor"] = "big"; }, "rope_scaling.factor must be a number"},
      {[](json& c) { c["eos_token_id"] = json::array({1, "x"}); }, "'eos_token_id' must be an integer"},
  };
  for (const auto& [edit, fragment] : cases) {
    Model m;
    json c = m.config();
    edit(c);
    m.write("config.json", c.dump());
    expect_refused("info --model " + m.dir(), {"config.json", fragment});
    expect_refused("logits --model " + m.dir() + " --ids 1,2 --out /dev/null", {"config.json", fragment});
  }
}

TEST(HostileCli, JsonFiles) {
  Model m;
  const std::string good = m.config().dump();
  m.write("config.json", good.substr(0, good.size() - 1) + ", \"x\": 1e999}");
  expect_refused("info --model " + m.dir(), {"config.json", "invalid JSON", "1e999"});
  m.write("config.json", good.substr(0, good.size() - 1) + ", \"x\": " + repeat("[", 1000000) + repeat("]", 1000000) + "}");
  expect_refused("info --model " + m.dir(), {"config.json", "deeper than 256"});
  m.write("config.json", good);
  m.write("model.safetensors.index.json", R"({"metadata": {"total_size": 1e999}, "weight_map": {}})");
  expect_refused("info --model " + m.dir(), {"model.safetensors.index.json", "invalid JSON"});
}

std::string safetensors(const std::string& header, size_t data_bytes) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((uint64_t(header.size()) >> (8 * i)) & 0xff);
  return out + header + std::string(data_bytes, '\0');
}

TEST(HostileCli, SafetensorsHeaders) {
  Model m;
  std::filesystem::remove(m.d.file("model.safetensors.index.json"));
  for (const auto& name : {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"})
    std::filesystem::remove(m.d.file(name));
  m.write("model.safetensors", safetensors(R"({"w":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}})", 0));
  expect_refused("info --model " + m.dir(), {"model.safetensors", "'w'", "2^64 bytes"});
  m.write("model.safetensors", safetensors(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8));
  expect_refused("info --model " + m.dir(), {"model.safetensors", "key 'w' appears twice"});
  m.write("model.safetensors", safetensors(R"({"w":{"dtype":"F32","shape":[1e999],"data_offsets":[0,4]}})", 4));
  expect_refused("info --model " + m.dir(), {"model.safetensors", "invalid JSON"});
}

TEST(HostileCli, TokenizerFiles) {
  const std::vector<std::pair<std::function<void(json&)>, std::string>> cases = {
      {[](json& t) { t["normalizer"] = {{"type", 5}}; }, "'type' must be a string, got 5"},
      {[](json& t) { t["model"]["dropout"] = "0.1"; }, "'dropout' must be a number"},
      {[](json& t) { t["model"]["vocab"]["zz"] = 2147483647; }, "2147483647"},
      {[](json& t) { t["added_tokens"] = json::array({{{"id", 4294967301ll}, {"content", "<x>"}}}); }, "4294967301"},
      {[](json& t) { t["added_tokens"] = json::array({{{"id", 5}, {"content", "<x>"}, {"special", "yes"}}}); },
       "expected true or false"},
  };
  for (const auto& [edit, fragment] : cases) {
    Model m;
    json t = tiny_tokenizer();
    edit(t);
    m.write("tokenizer.json", t.dump());
    expect_refused("tokenize --model " + m.dir() + " --text hi", {"tokenizer.json", fragment});
  }
  Model m;
  m.write("tokenizer.json", tiny_tokenizer().dump() + repeat(" ", 1) + "x");
  expect_refused("tokenize --model " + m.dir() + " --text hi", {"tokenizer.json", "invalid JSON"});
  m.write("tokenizer.json", "{\"a\": " + repeat("[", 1000000) + repeat("]", 1000000) + "}");
  expect_refused("tokenize --model " + m.dir() + " --text hi", {"tokenizer.json", "deeper than 256"});
  m.write("tokenizer.json", tiny_tokenizer().dump());
  m.write("tokenizer_config.json", R"({"model_max_length": 1e999})");
  expect_refused("tokenize --model " + m.dir() + " --text hi", {"tokenizer_config.json", "invalid JSON"});
}

TEST(HostileCli, ChatTemplates) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "max_depth = 400"},
      {"{{ " + repeat("(", 100000) + "1" + repeat(")", 100000) + " }}", "max_nesting = 100"},
      {repeat("{% if true %}", 100000) + repeat("{% endif %}", 100000), "max_nesting = 100"},
      {"{% set ns = namespace() %}{% set ns.self = ns %}{{ ns | tojson }}", "hold itself"},
      {"{% for i in range(10**9) %}{% endfor %}", "max_items"},
      {"{{ 'a' | indent(10**12) }}", "max_string_bytes"},
      {"{% set ns = namespace(s='xx') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
       "exceeds the template limit max_"},  // max_string_bytes, or max_seconds on a slow build
      {"{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
       "exceeds the template limit max_"},  // max_steps, or max_seconds
      {"{{ 9223372036854775807 + 1 }}", "integer overflow in '+'"},
      {"{{ (-9223372036854775807 - 1) % -1 }}", "INT64_MIN % -1"},
      {"{{ 1 // 0 }}", "division by zero"},
      {"{{ 123456789012345678901234567890 }}", "does not fit in 64 bits"},
      {"{% set ns = namespace(a=[]) %}{% for i in range(40) %}{% set ns.a = [ns.a, ns.a] %}{% endfor %}{{ ns.a }}",
       "template limit max_"},
      {"{{ raise_exception('no') }}", "raise_exception: no"},
  };
  for (const auto& [src, fragment] : cases) {
    Model m;
    m.set_template(src);
    m.write("messages.json", R"([{"role": "user", "content": "hi"}])");
    expect_refused("template --model " + m.dir() + " --messages " + m.d.file("messages.json"),
                   {"chat template line", fragment});
  }
  // The same through chat, on a real (tiny) model reading a pipe.
  Model m;
  m.set_template("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
  expect_refused("chat --model " + m.dir() + " --threads 1", {"max_depth"}, "hello\n");
}

TEST(HostileCli, TemplateVariables) {
  Model m;
  m.write("messages.json", "[{\"role\": \"user\", \"content\": " + repeat("[", 100000) + repeat("]", 100000) + "}]");
  expect_refused("template --model " + m.dir() + " --messages " + m.d.file("messages.json"),
                 {"messages.json", "deeper than 256"});
  m.write("messages.json", R"([{"role": "user", "content": 1e999}])");
  expect_refused("template --model " + m.dir() + " --messages " + m.d.file("messages.json"),
                 {"messages.json", "invalid JSON"});
}

}  // namespace
}  // namespace dsv3
