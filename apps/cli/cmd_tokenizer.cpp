// dsv3 tokenize / detokenize / template: the tokenizer and chat template from the command line.
// They need only DIR/tokenizer.json and DIR/tokenizer_config.json.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "apps/cli/commands.h"
#include "base/error.h"
#include "tokenizer/chat_template.h"
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

void run_tokenize(const std::string& model, bool no_bos, const std::string& text, const std::string& jsonl, bool have_text) {
  Tokenizer tok = Tokenizer::load(model);
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
    std::string doc = with_context(fmt::format("{}:{}", jsonl, line_no), [&] {
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception& e) {
        fail("invalid JSON: {}", e.what());
      }
      if (!j.is_string()) fail("expected a JSON string, got {}", j.type_name());
      return j.get<std::string>();
    });
    print_ids(with_context(fmt::format("{}:{}", jsonl, line_no), [&] { return tok.encode(doc, !no_bos); }));
  }
}

std::vector<int32_t> parse_ids(const std::string& s, int32_t vocab_size) {
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
    if (v < 0 || v >= vocab_size) fail("--ids: id {} is outside the vocabulary [0, {})", v, vocab_size);
    ids.push_back(static_cast<int32_t>(v));
  }
  return ids;
}

void run_template(const std::string& model, const std::string& messages_file, bool add_generation_prompt) {
  Tokenizer tok = Tokenizer::load(model);
  nlohmann::json input;
  try {
    input = nlohmann::json::parse(read_file(messages_file));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: invalid JSON: {}", messages_file, e.what());
  }
  // Either a list of messages, or an object {"messages": [...], other variables...}.
  nlohmann::json messages, extra = nlohmann::json::object();
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

}  // namespace

void add_tokenizer_commands(CLI::App& app) {
  {
    auto* cmd = app.add_subcommand("tokenize", "Encode text to token ids (one JSON array per input)");
    auto model = std::make_shared<std::string>();
    auto text = std::make_shared<std::string>();
    auto jsonl = std::make_shared<std::string>();
    auto no_bos = std::make_shared<bool>(false);
    cmd->add_option("--model", *model, "Directory with tokenizer.json and tokenizer_config.json")->required();
    auto* text_opt = cmd->add_option("--text", *text, "Text to encode");
    cmd->add_option("--jsonl", *jsonl, "File with one JSON string per line");
    cmd->add_flag("--no-bos", *no_bos, "Add no special tokens (no BOS even when add_bos_token is set)");
    cmd->callback([=] { run_tokenize(*model, *no_bos, *text, *jsonl, text_opt->count() > 0); });
  }
  {
    auto* cmd = app.add_subcommand("detokenize", "Decode token ids to text");
    auto model = std::make_shared<std::string>();
    auto ids = std::make_shared<std::string>();
    auto skip = std::make_shared<bool>(false);
    cmd->add_option("--model", *model, "Directory with tokenizer.json and tokenizer_config.json")->required();
    cmd->add_option("--ids", *ids, "Comma-separated ids, e.g. 0,19923")->required();
    cmd->add_flag("--skip-special", *skip, "Drop special tokens");
    cmd->callback([=] {
      Tokenizer tok = Tokenizer::load(*model);
      std::string out = tok.decode(parse_ids(*ids, tok.vocab_size()), *skip);
      std::fwrite(out.data(), 1, out.size(), stdout);
    });
  }
  {
    auto* cmd = app.add_subcommand("template", "Render the chat template exactly (no newline added)");
    auto model = std::make_shared<std::string>();
    auto messages = std::make_shared<std::string>();
    auto gen = std::make_shared<bool>(false);
    cmd->add_option("--model", *model, "Directory with tokenizer.json and tokenizer_config.json")->required();
    cmd->add_option("--messages", *messages,
                    "JSON file: a list of messages, or {\"messages\": [...], other template variables...}")
        ->required();
    cmd->add_flag("--add-generation-prompt", *gen, "End with the assistant prompt");
    cmd->callback([=] { run_template(*model, *messages, *gen); });
  }
}

}  // namespace dsv3::cli
