// dsv3 tokenize / detokenize / template: the tokenizer and chat template from the command line.
// They need only DIR/tokenizer.json and DIR/tokenizer_config.json.
#include <chrono>
#include <climits>
#include <filesystem>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "apps/cli/commands.h"
#include "apps/cli/common.h"
#include "base/error.h"
#include "io/json_file.h"
#include "io/json_input.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/jinja/value.h"
#include "tokenizer/tokenizer.h"

namespace dsv3::cli {
namespace {

void print_ids(const std::vector<int32_t>& ids) {
  std::string line = "[";
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) line += ',';
    line += std::to_string(ids[i]);
  }
  line += "]\n";
  std::fwrite(line.data(), 1, line.size(), stdout);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open {}", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void run_tokenize(const Tokenizer& tok, bool no_bos, const std::string& text, const std::string& jsonl, bool have_text) {
  if (have_text == !jsonl.empty()) fail("tokenize: give exactly one of --text and --jsonl");
  if (have_text) {
    print_ids(tok.encode(text, !no_bos));
    return;
  }
  std::ifstream in(jsonl, std::ios::binary);
  if (!in) fail("cannot open {}", jsonl);
  std::string line;
  size_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    // A lone surrogate escape is U+FFFD, as Python's json and Hugging Face make it.
    const std::string where = fmt::format("{}:{}", jsonl, line_no);
    const auto j = parse_user_json(line, where);
    if (!j.is_string()) fail("{}: expected a JSON string, got {}", where, j.type_name());
    const std::string doc = j.get<std::string>();
    print_ids(with_context(fmt::format("{}:{}", jsonl, line_no), [&] { return tok.encode(doc, !no_bos); }));
  }
}

// Ids for detokenize. `limit`: the model's vocabulary size (config.json beside the tokenizer),
// else any non-negative id; an id below it without a token (DeepSeek-V3's 128815..129279, the
// padding of the embedding) decodes to nothing, as Hugging Face does.
std::vector<int32_t> parse_ids(const std::string& s, int64_t limit) {
  std::vector<int32_t> ids;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size()) fail("--ids: '{}' is not an integer", item);
    if (v < 0 || v >= limit) fail("--ids: id {} is outside the model's vocabulary [0, {})", v, limit);
    ids.push_back(static_cast<int32_t>(v));
  }
  return ids;
}

int64_t model_vocab_size(const std::string& dir, const Tokenizer& tok) {
  const auto path = std::filesystem::path(dir) / "config.json";
  if (!std::filesystem::exists(path)) return INT32_MAX;
  const auto j = parse_user_json(read_text_file(path.string()), path.string());
  const auto it = j.find("vocab_size");
  if (it == j.end() || !it->is_number_integer()) return INT32_MAX;
  return std::max<int64_t>(it->get<int64_t>(), tok.vocab_size());
}

void run_template(const Tokenizer& tok, const std::string& messages_file, bool add_generation_prompt) {
  const nlohmann::ordered_json input = parse_user_json(read_file(messages_file), messages_file);
  // Either a list of messages, or an object {"messages": [...], other variables...}.
  nlohmann::ordered_json messages, extra = nlohmann::ordered_json::object();
  if (input.is_array()) {
    messages = input;
  } else if (input.is_object() && input.contains("messages")) {
    messages = input["messages"];
    for (const auto& [k, v] : input.items()) {
      if (k != "messages") extra[k] = v;
    }
    if (extra.contains("add_generation_prompt")) {
      if (!extra["add_generation_prompt"].is_boolean()) fail("{}: 'add_generation_prompt' must be true or false", messages_file);
      add_generation_prompt = add_generation_prompt || extra["add_generation_prompt"].get<bool>();
      extra.erase("add_generation_prompt");
    }
  } else {
    fail("{}: expected a list of messages or an object with 'messages'", messages_file);
  }
  ChatTemplate t = ChatTemplate::from_config(tok.config());
  std::string out = t.render(messages, add_generation_prompt, extra);
  std::fwrite(out.data(), 1, out.size(), stdout);
}

// Conformance batch mode (hidden flag --ids-jsonl): decodes each JSON array of ids and prints
// {"text": decoded, "skip": decoded with skip_special} per line, escaped as JSON.stringify does.
void run_decode_batch(const Tokenizer& tok, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open {}", path);
  std::string line;
  size_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    std::vector<int32_t> ids;
    try {
      for (const auto& v : parse_json(line, fmt::format("{}:{}", path, line_no))) ids.push_back(v.get<int32_t>());
    } catch (const nlohmann::json::exception& e) {
      fail("{}:{}: expected a JSON array of ids: {}", path, line_no, e.what());
    }
    jinja::JsonOptions opt;
    std::string out = "{\"text\":" + jinja::to_json(jinja::Value::string(tok.decode(ids, false)), opt) +
                      ",\"skip\":" + jinja::to_json(jinja::Value::string(tok.decode(ids, true)), opt) + "}\n";
    std::fwrite(out.data(), 1, out.size(), stdout);
  }
}

// Conformance batch mode (hidden flag --cases): renders every case of a JSON list, each
// {"messages": [...], "add_generation_prompt": bool, "template"?: source, ...variables}, and
// prints one JSON line per case: the rendered string, or {"error": message}.
void run_template_cases(const Tokenizer& tok, const std::string& cases_file) {
  const nlohmann::ordered_json cases = parse_ordered_json(read_file(cases_file), cases_file);
  if (!cases.is_array()) fail("{}: expected a list of cases", cases_file);
  const TokenizerConfig& cfg = tok.config();
  for (const auto& c : cases) {
    std::string line;
    try {
      nlohmann::ordered_json extra = nlohmann::ordered_json::object();
      for (const auto& [k, v] : c.items()) {
        if (k != "messages" && k != "template" && k != "add_generation_prompt") extra[k] = v;
      }
      ChatTemplate t = c.contains("template")
                           ? ChatTemplate(c["template"].get<std::string>(), cfg.bos_token.value_or(""), cfg.eos_token.value_or(""))
                           : ChatTemplate::from_config(cfg);
      std::string out = t.render(c.value("messages", nlohmann::ordered_json::array()), c.value("add_generation_prompt", false), extra);
      // JSON.stringify's escaping, so the lines compare byte for byte with the oracle's.
      line = jinja::to_json(jinja::Value::string(out), jinja::JsonOptions{});
    } catch (const Error& e) {
      line = "{\"error\": " + jinja::to_json(jinja::Value::string(e.what()), jinja::JsonOptions{}) + "}";
    }
    line += "\n";
    std::fwrite(line.data(), 1, line.size(), stdout);
  }
}

}  // namespace

void add_tokenizer_commands(CLI::App& app) {
  {
    auto* cmd = app.add_subcommand("tokenize", "Encode text to token ids (one JSON array per input)");
    auto model = std::make_shared<std::string>();
    auto text = std::make_shared<std::string>();
    auto jsonl = std::make_shared<std::string>();
    auto no_bos = std::make_shared<bool>(false);
    cmd->add_option("--model", *model, "Directory with tokenizer.json (or tiktoken.model) and tokenizer_config.json")->required();
    auto* text_opt = cmd->add_option("--text", *text, "Text to encode");
    cmd->add_option("--jsonl", *jsonl, "File with one JSON string per line");
    cmd->add_flag("--no-bos", *no_bos, "Add no special tokens (no BOS even when add_bos_token is set)");
    auto pattern = std::make_shared<std::string>();
    cmd->add_option("--tiktoken-pattern", *pattern, kTiktokenPatternHelp);
    cmd->callback([=] { run_tokenize(load_tokenizer(*model, *pattern), *no_bos, *text, *jsonl, text_opt->count() > 0); });
  }
  {
    auto* cmd = app.add_subcommand("detokenize", "Decode token ids to text");
    auto model = std::make_shared<std::string>();
    auto ids = std::make_shared<std::string>();
    auto skip = std::make_shared<bool>(false);
    auto ids_jsonl = std::make_shared<std::string>();
    cmd->add_option("--model", *model, "Directory with tokenizer.json (or tiktoken.model) and tokenizer_config.json")->required();
    cmd->add_option("--ids", *ids, "Comma-separated ids, e.g. 0,19923 (ids of the model's vocabulary that have no token, such as DeepSeek-V3's 128815-129279, decode to nothing, as in Hugging Face)");
    cmd->add_flag("--skip-special", *skip, "Drop special tokens");
    cmd->add_option("--ids-jsonl", *ids_jsonl, "Conformance batch mode")->group("");
    auto pattern = std::make_shared<std::string>();
    cmd->add_option("--tiktoken-pattern", *pattern, kTiktokenPatternHelp);
    cmd->callback([=] {
      Tokenizer tok = load_tokenizer(*model, *pattern);
      if (!ids_jsonl->empty()) return run_decode_batch(tok, *ids_jsonl);
      if (ids->empty()) fail("detokenize: --ids is required");
      std::string out = tok.decode(parse_ids(*ids, model_vocab_size(*model, tok)), *skip);
      std::fwrite(out.data(), 1, out.size(), stdout);
    });
  }
  {
    auto* cmd = app.add_subcommand("template", "Render the chat template exactly (no newline added)");
    auto model = std::make_shared<std::string>();
    auto messages = std::make_shared<std::string>();
    auto gen = std::make_shared<bool>(false);
    cmd->add_option("--model", *model, "Directory with tokenizer.json (or tiktoken.model) and tokenizer_config.json")->required();
    auto cases = std::make_shared<std::string>();
    cmd->add_option("--messages", *messages,
                    "JSON file: a list of messages, or {\"messages\": [...], other template variables...}");
    cmd->add_flag("--add-generation-prompt", *gen, "End with the assistant prompt");
    cmd->add_option("--cases", *cases, "Conformance batch mode")->group("");
    cmd->callback([=] {
      const Tokenizer tok = load_tokenizer(*model);
      if (!cases->empty()) return run_template_cases(tok, *cases);
      if (messages->empty()) fail("template: --messages is required");
      run_template(tok, *messages, *gen);
    });
  }
}

}  // namespace dsv3::cli
