#include "serve/output_parser.h"

#include <algorithm>
#include <cctype>

#include "base/error.h"
#include "tokenizer/utf8.h"

namespace dsv3::serve {
namespace {

using detail::Marker;

// Marker texts (DeepSeek's use U+FF5C '｜' and U+2581 '▁'; SERVER.md §2.1).
constexpr const char* kDsCallsBegin = "<｜tool▁calls▁begin｜>";
constexpr const char* kDsCallsEnd = "<｜tool▁calls▁end｜>";
constexpr const char* kDsCallBegin = "<｜tool▁call▁begin｜>";
constexpr const char* kDsCallEnd = "<｜tool▁call▁end｜>";
constexpr const char* kDsSep = "<｜tool▁sep｜>";
constexpr const char* kKimiSectionBegin = "<|tool_calls_section_begin|>";
constexpr const char* kKimiSectionBeginSingular = "<|tool_call_section_begin|>";
constexpr const char* kKimiSectionEnd = "<|tool_calls_section_end|>";
constexpr const char* kKimiCallBegin = "<|tool_call_begin|>";
constexpr const char* kKimiArgBegin = "<|tool_call_argument_begin|>";
constexpr const char* kKimiCallEnd = "<|tool_call_end|>";
constexpr const char* kThinkBegin = "<think>";
constexpr const char* kThinkEnd = "</think>";

struct MarkerText {
  const char* text;
  Marker kind;
};

std::vector<MarkerText> tool_markers(ToolCallFormat f) {
  switch (f) {
    case ToolCallFormat::None:
      return {};
    case ToolCallFormat::DeepSeekV3:
    case ToolCallFormat::DeepSeekV31:
      return {{kDsCallsBegin, Marker::CallsBegin},
              {kDsCallsEnd, Marker::CallsEnd},
              {kDsCallBegin, Marker::CallBegin},
              {kDsCallEnd, Marker::CallEnd},
              {kDsSep, Marker::Sep}};
    case ToolCallFormat::KimiK2:
      return {{kKimiSectionBegin, Marker::CallsBegin},
              {kKimiSectionEnd, Marker::CallsEnd},
              {kKimiCallBegin, Marker::CallBegin},
              {kKimiArgBegin, Marker::Sep},
              {kKimiCallEnd, Marker::CallEnd}};
  }
  return {};
}

using MarkerTable = std::vector<std::pair<int32_t, Marker>>;

// The marker ids of the formats. A marker missing from the tokenizer never occurs; R1 parsing
// without a `</think>` token would call the whole output reasoning, so it is dropped then.
MarkerTable marker_table(const Tokenizer& tok, ToolCallFormat tools, ReasoningFormat reasoning) {
  MarkerTable table;
  auto add = [&](const char* text, Marker kind) {
    int32_t id = tok.token_to_id(text);
    if (id >= 0) table.emplace_back(id, kind);
  };
  for (const MarkerText& m : tool_markers(tools)) add(m.text, m.kind);
  if (tools == ToolCallFormat::KimiK2) add(kKimiSectionBeginSingular, Marker::CallsBegin);
  if (reasoning == ReasoningFormat::DeepSeekR1 && tok.token_to_id(kThinkEnd) >= 0) {
    add(kThinkBegin, Marker::ThinkBegin);
    add(kThinkEnd, Marker::ThinkEnd);
  }
  return table;
}

Marker marker_of(const MarkerTable& table, int32_t id) {
  for (const auto& [mid, kind] : table) {
    if (mid == id) return kind;
  }
  return Marker::None;
}

bool reasoning_active(const MarkerTable& table) {
  return std::any_of(table.begin(), table.end(), [](const auto& e) { return e.second == Marker::ThinkEnd; });
}

// ASCII whitespace: what separates the DeepSeek tool-call pieces (JSON's own whitespace too).
bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

bool has_non_ws(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return !is_ws(c); });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_ws(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ws(s.back())) s.remove_suffix(1);
  return s;
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Flag spellings: vLLM writes deepseek_v3, SGLang deepseekv3 or deepseek-v3; compare without
// case, '-' and '_'.
std::string flag_key(std::string_view name) {
  std::string key;
  for (char c : name) {
    if (c == '-' || c == '_') continue;
    key += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return key;
}

// Jinja's truthiness, which is what the chat template sees for the same kwarg.
bool truthy(const nlohmann::json& v) {
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number()) return v.get<double>() != 0.0;
  if (v.is_string() || v.is_array() || v.is_object()) return !v.empty();
  return false;
}

// V3 arguments in the text after the name's "\n": where they start, skipping whitespace and
// an opening fence line "```json\n". nullopt while undecided (only whitespace, a partial
// fence, or a fence line without its "\n" so far); `final` decides those cases.
std::optional<size_t> v3_args_begin(std::string_view body, bool final) {
  size_t i = 0;
  while (i < body.size() && is_ws(body[i])) ++i;
  if (i == body.size()) return final ? std::optional<size_t>(i) : std::nullopt;
  if (body.compare(i, 3, "```") == 0) {
    size_t nl = body.find('\n', i + 3);
    if (nl != std::string_view::npos) return nl + 1;
    return final ? std::optional<size_t>(body.size()) : std::nullopt;
  }
  bool fence_prefix = body.size() - i < 3 && body.find_first_not_of('`', i) == std::string_view::npos;
  if (fence_prefix && !final) return std::nullopt;
  return i;
}

// Where the V3 arguments end once the call is over: before the closing fence (up to three
// backticks, so that a fence cut by max_tokens goes too) and the whitespace around it.
size_t v3_args_end(std::string_view body, size_t begin) {
  size_t end = body.size();
  while (end > begin && is_ws(body[end - 1])) --end;
  for (int n = 0; n < 3 && end > begin && body[end - 1] == '`'; ++n) --end;
  while (end > begin && is_ws(body[end - 1])) --end;
  return end;
}

}  // namespace

// --- Flags and auto-detection -------------------------------------------------------------

std::optional<ToolCallFormat> parse_tool_call_parser(std::string_view name) {
  std::string key = flag_key(name);
  if (key == "auto") return std::nullopt;
  if (key == "none") return ToolCallFormat::None;
  if (key == "deepseekv3") return ToolCallFormat::DeepSeekV3;
  if (key == "deepseekv31") return ToolCallFormat::DeepSeekV31;
  if (key == "kimik2") return ToolCallFormat::KimiK2;
  fail(
      "--tool-call-parser: unknown parser '{}'; valid: auto, none, deepseek_v3 (V3, R1; SGLang: deepseekv3), "
      "deepseek_v31 (V3.1; deepseekv31), kimi_k2 ('-' and '_' are interchangeable)",
      name);
}

ReasoningParserChoice parse_reasoning_parser(std::string_view name) {
  std::string key = flag_key(name);
  if (key == "auto") return ReasoningParserChoice::Auto;
  if (key == "none") return ReasoningParserChoice::None;
  if (key == "deepseekr1") return ReasoningParserChoice::DeepSeekR1;
  if (key == "deepseekv3") return ReasoningParserChoice::DeepSeekV3;
  fail(
      "--reasoning-parser: unknown parser '{}'; valid: auto, none, deepseek_r1 (SGLang: deepseek-r1), "
      "deepseek_v3 (R1 parsing when chat_template_kwargs.thinking is true; SGLang: deepseek-v3) "
      "('-' and '_' are interchangeable)",
      name);
}

const char* to_string(ToolCallFormat f) {
  switch (f) {
    case ToolCallFormat::None:
      return "none";
    case ToolCallFormat::DeepSeekV3:
      return "deepseek_v3";
    case ToolCallFormat::DeepSeekV31:
      return "deepseek_v31";
    case ToolCallFormat::KimiK2:
      return "kimi_k2";
  }
  return "?";
}

const char* to_string(ReasoningParserChoice c) {
  switch (c) {
    case ReasoningParserChoice::Auto:
      return "auto";
    case ReasoningParserChoice::None:
      return "none";
    case ReasoningParserChoice::DeepSeekR1:
      return "deepseek_r1";
    case ReasoningParserChoice::DeepSeekV3:
      return "deepseek_v3";
  }
  return "?";
}

namespace {

std::vector<std::string> missing_tokens(const Tokenizer& tok, ToolCallFormat f) {
  std::vector<std::string> missing;
  for (const MarkerText& m : tool_markers(f)) {
    if (tok.token_to_id(m.text) < 0) missing.emplace_back(m.text);
  }
  return missing;
}

bool has_think_tokens(const Tokenizer& tok) {
  return tok.token_to_id(kThinkBegin) >= 0 && tok.token_to_id(kThinkEnd) >= 0;
}

}  // namespace

ParserSelection detect_parsers(std::string_view tmpl, const Tokenizer& tok) {
  ParserSelection s;
  auto mentions = [&](std::string_view text) { return tmpl.find(text) != std::string_view::npos; };
  if (mentions("tool_calls_section_begin") || mentions("tool_call_section_begin")) {
    if (missing_tokens(tok, ToolCallFormat::KimiK2).empty()) {
      s.tools = ToolCallFormat::KimiK2;
      s.why = "tools kimi_k2 (template writes tool_calls_section_begin)";
    } else {
      s.why = "tools none (template writes Kimi-K2 tool calls, but the tokenizer lacks their marker tokens)";
    }
  } else if (mentions("tool▁call▁begin")) {
    ToolCallFormat f = mentions("```json") ? ToolCallFormat::DeepSeekV3 : ToolCallFormat::DeepSeekV31;
    if (missing_tokens(tok, f).empty()) {
      s.tools = f;
      s.why = f == ToolCallFormat::DeepSeekV3
                  ? "tools deepseek_v3 (template fences arguments in ```json)"
                  : "tools deepseek_v31 (template writes NAME<｜tool▁sep｜>ARGS without a fence)";
    } else {
      s.why = "tools none (template writes DeepSeek tool calls, but the tokenizer lacks their marker tokens)";
    }
  } else {
    s.why = "tools none (template writes no tool calls)";
  }

  if (!has_think_tokens(tok)) {
    s.why += "; reasoning none (<think>/</think> are not tokens of this tokenizer)";
  } else if (mentions("thinking")) {
    s.reasoning = ReasoningParserChoice::DeepSeekV3;
    s.why += "; reasoning deepseek_v3 (template switches on `thinking`)";
  } else if (mentions(kThinkBegin)) {
    s.reasoning = ReasoningParserChoice::DeepSeekR1;
    s.why += "; reasoning deepseek_r1 (template writes <think>)";
  } else {
    s.why += "; reasoning none (template writes no <think>)";
  }
  return s;
}

ReasoningFormat reasoning_for_request(ReasoningParserChoice choice, const nlohmann::json& kwargs) {
  DSV3_CHECK(choice != ReasoningParserChoice::Auto, "reasoning_for_request: resolve 'auto' with detect_parsers first");
  switch (choice) {
    case ReasoningParserChoice::Auto:
    case ReasoningParserChoice::None:
      return ReasoningFormat::None;
    case ReasoningParserChoice::DeepSeekR1:
      return ReasoningFormat::DeepSeekR1;
    case ReasoningParserChoice::DeepSeekV3: {
      if (!kwargs.is_object()) return ReasoningFormat::None;
      for (const char* key : {"thinking", "enable_thinking"}) {
        auto it = kwargs.find(key);
        if (it != kwargs.end() && truthy(*it)) return ReasoningFormat::DeepSeekR1;
      }
      return ReasoningFormat::None;
    }
  }
  return ReasoningFormat::None;
}

void check_parser_tokens(const Tokenizer& tok, ToolCallFormat tools, ReasoningParserChoice reasoning) {
  std::vector<std::string> missing = missing_tokens(tok, tools);
  if (!missing.empty()) {
    fail(
        "--tool-call-parser {}: the tokenizer has no single token '{}' (the format's markers must be tokens; "
        "is this the model the parser is for?)",
        to_string(tools), missing.front());
  }
  bool wants_think = reasoning == ReasoningParserChoice::DeepSeekR1 || reasoning == ReasoningParserChoice::DeepSeekV3;
  if (wants_think && !has_think_tokens(tok)) {
    fail(
        "--reasoning-parser {}: the tokenizer has no single tokens '<think>' and '</think>' (is this a reasoning "
        "model?)",
        to_string(reasoning));
  }
}

std::string kimi_tool_name(std::string_view id_in, std::span<const std::string> tool_names) {
  std::string_view id = trim(id_in);
  auto is_tool = [&](std::string_view n) {
    return std::find(tool_names.begin(), tool_names.end(), n) != tool_names.end();
  };
  // NAME:IDX, with or without the "functions." prefix.
  auto name_colon_index = [](std::string_view s) -> std::optional<std::string_view> {
    size_t colon = s.rfind(':');
    if (colon == std::string_view::npos || colon == 0 || !all_digits(s.substr(colon + 1))) return std::nullopt;
    return s.substr(0, colon);
  };
  constexpr std::string_view kPrefix = "functions";
  if (id.starts_with(kPrefix) && id.size() > kPrefix.size()) {
    std::string_view s = id.substr(kPrefix.size());
    if (s.front() == '.' || s.front() == '_') s.remove_prefix(1);
    if (auto n = name_colon_index(s)) return std::string(*n);
    if (s.empty() || is_tool(s)) return std::string(s.empty() ? id : s);
    std::string_view n = s;
    while (!n.empty() && n.back() >= '0' && n.back() <= '9') n.remove_suffix(1);
    if (n.size() < s.size() && !n.empty() && (n.back() == ':' || n.back() == '_')) n.remove_suffix(1);
    return std::string(n.empty() ? s : n);
  }
  if (auto n = name_colon_index(id)) return std::string(*n);
  if (is_tool(id)) return std::string(id);
  if (tool_names.size() == 1) return tool_names.front();
  return std::string(id);
}

// --- Streaming ----------------------------------------------------------------------------

OutputParser::OutputParser(const Tokenizer& tok, OutputParserOptions opts)
    : tok_(tok), opts_(std::move(opts)), markers_(marker_table(tok_, opts_.tools, opts_.reasoning)) {
  state_ = reasoning_active(markers_) ? State::Reasoning : State::Content;
}

OutputDelta OutputParser::push(std::span<const int32_t> ids) {
  DSV3_CHECK(!finished_, "OutputParser::push after finish()");
  OutputDelta delta;
  out_ = &delta;
  for (int32_t id : ids) {
    Marker m = marker_of(markers_, id);
    if (m == Marker::None) {
      pending_.append(tok_.token_bytes(id, opts_.skip_special_tokens));
      // As StreamDecoder: cutting before an unfinished character keeps lossy decoding of the
      // parts equal to lossy decoding of the whole run.
      size_t n = complete_utf8_prefix(pending_);
      if (n > 0) {
        std::string text = utf8_lossy(std::string_view(pending_).substr(0, n));
        pending_.erase(0, n);
        on_text(text);
      }
      continue;
    }
    if (!pending_.empty()) {  // a marker ends the run of text
      std::string text = utf8_lossy(pending_);
      pending_.clear();
      on_text(text);
    }
    on_marker(m);
  }
  out_ = nullptr;
  return delta;
}

OutputDelta OutputParser::finish() {
  DSV3_CHECK(!finished_, "OutputParser::finish called twice");
  OutputDelta delta;
  out_ = &delta;
  if (!pending_.empty()) {
    std::string text = utf8_lossy(pending_);
    pending_.clear();
    on_text(text);
  }
  switch (state_) {
    case State::Reasoning:
    case State::Content:
      break;
    case State::Block:
      gap_.clear();
      break;
    case State::Header:
    case State::Name:
    case State::Body:
    case State::NotACall:
      end_call(/*explicit_end=*/false);
      break;
  }
  finished_ = true;
  out_ = nullptr;
  return delta;
}

ParsedOutput OutputParser::result() const {
  ParsedOutput r;
  if (!reasoning_all_.empty()) r.reasoning = reasoning_all_;
  if (!content_all_.empty() || (calls_.empty() && reasoning_all_.empty())) r.content = content_all_;
  r.tool_calls = calls_;
  return r;
}

void OutputParser::on_text(const std::string& text) {
  switch (state_) {
    case State::Reasoning:
      emit_reasoning(text);
      break;
    case State::Content:
    case State::NotACall:
      emit_content(text);
      break;
    case State::Block:
      if (gap_shown_) {
        emit_content(text);
      } else {
        gap_ += text;
        if (has_non_ws(gap_)) {
          emit_content(gap_);
          gap_.clear();
          gap_shown_ = true;
        }
      }
      break;
    case State::Header:
      call_text_ += text;
      if (opts_.tools != ToolCallFormat::DeepSeekV3) head_ += text;  // V3: the type, unused
      break;
    case State::Name: {
      call_text_ += text;
      size_t from = head_.size();
      head_ += text;
      size_t nl = head_.find('\n', from);
      if (nl == std::string::npos) break;
      std::string rest = head_.substr(nl + 1);
      head_.resize(nl);
      if (trim(head_).empty()) {
        not_a_call();
      } else {
        start_call(trim(head_));
        append_body(rest);
      }
      break;
    }
    case State::Body:
      append_body(text);
      break;
  }
}

void OutputParser::on_marker(Marker m) {
  auto begin_call = [&] {
    state_ = State::Header;
    call_text_.clear();
    head_.clear();
    body_.clear();
    args_begin_ = std::string::npos;
    solid_end_ = 0;
    args_sent_ = 0;
  };
  auto enter_block = [&] {
    state_ = State::Block;
    gap_.clear();
    gap_shown_ = false;
  };
  switch (state_) {
    case State::Reasoning:
      if (m == Marker::ThinkEnd) {
        state_ = State::Content;
      } else if (m == Marker::CallsBegin || m == Marker::CallBegin) {  // implicit </think>
        state_ = State::Content;
        on_marker(m);
      }
      break;
    case State::Content:
      if (m == Marker::CallsBegin) enter_block();
      if (m == Marker::CallBegin) begin_call();
      // After reasoning ended, think tags are the answer's text (vLLM and SGLang split at the
      // first </think> only).
      if (m == Marker::ThinkBegin) emit_content(kThinkBegin);
      if (m == Marker::ThinkEnd) emit_content(kThinkEnd);
      break;
    case State::Block:
      enter_block();  // any marker ends the run of text between calls
      if (m == Marker::CallsEnd) state_ = State::Content;
      if (m == Marker::CallBegin) begin_call();
      break;
    case State::Header:
    case State::Name:
    case State::Body:
    case State::NotACall:
      if (m == Marker::Sep && state_ == State::Header) {
        if (opts_.tools == ToolCallFormat::DeepSeekV3) {
          state_ = State::Name;  // head_ now collects the name line
        } else if (trim(head_).empty()) {
          not_a_call();
        } else {
          start_call(trim(head_));
        }
      } else if (m == Marker::CallEnd) {
        end_call(true);
        enter_block();
      } else if (m == Marker::CallBegin) {
        end_call(true);
        begin_call();
      } else if (m == Marker::CallsEnd) {
        end_call(true);
        state_ = State::Content;
      }
      break;
  }
}

void OutputParser::start_call(std::string_view head) {
  int index = static_cast<int>(calls_.size());
  ToolCall call;
  if (opts_.tools == ToolCallFormat::KimiK2) {
    call.id = std::string(head);
    call.name = kimi_tool_name(head, opts_.tool_names);
  } else {
    call.id = opts_.call_id_prefix + std::to_string(index);
    call.name = std::string(head);
  }
  out_->tool_calls.push_back({.index = index, .id = call.id, .name = call.name, .arguments = ""});
  calls_.push_back(std::move(call));
  call_text_.clear();
  state_ = State::Body;
}

void OutputParser::not_a_call() {
  emit_content(call_text_);
  call_text_.clear();
  state_ = State::NotACall;
}

// At the end of a call: a call_end, call_begin or calls_end marker (explicit) or the end of
// the output. A header still open becomes a call only at an explicit end.
void OutputParser::end_call(bool explicit_end) {
  switch (state_) {
    case State::Header:
      if (explicit_end && opts_.tools != ToolCallFormat::DeepSeekV3 && !trim(head_).empty()) {
        start_call(trim(head_));
      } else {
        not_a_call();
      }
      break;
    case State::Name:
      if (explicit_end && !trim(head_).empty()) {
        start_call(trim(head_));
      } else {
        not_a_call();
      }
      break;
    case State::Body:
      if (opts_.tools == ToolCallFormat::DeepSeekV3) {
        size_t begin = args_begin_ != std::string::npos ? args_begin_ : *v3_args_begin(body_, /*final=*/true);
        size_t end = v3_args_end(body_, begin);
        DSV3_CHECK(begin + args_sent_ <= end, "V3 arguments: more was streamed than the call holds");
        emit_arguments(std::string_view(body_).substr(begin + args_sent_, end - begin - args_sent_));
        args_sent_ = end - begin;
      }
      break;
    default:
      break;
  }
  call_text_.clear();
}

void OutputParser::append_body(std::string_view text) {
  if (opts_.tools != ToolCallFormat::DeepSeekV3) {
    emit_arguments(text);
    return;
  }
  size_t from = body_.size();
  body_ += text;
  for (size_t i = from; i < body_.size(); ++i) {
    if (!is_ws(body_[i]) && body_[i] != '`') solid_end_ = i + 1;
  }
  if (args_begin_ == std::string::npos) {
    std::optional<size_t> b = v3_args_begin(body_, /*final=*/false);
    if (!b) return;
    args_begin_ = *b;
  }
  // Whitespace and backticks at the end may be the closing fence: hold them back.
  if (solid_end_ > args_begin_ + args_sent_) {
    emit_arguments(std::string_view(body_).substr(args_begin_ + args_sent_, solid_end_ - args_begin_ - args_sent_));
    args_sent_ = solid_end_ - args_begin_;
  }
}

void OutputParser::emit_reasoning(std::string_view s) {
  reasoning_all_ += s;
  out_->reasoning += s;
}

void OutputParser::emit_content(std::string_view s) {
  content_all_ += s;
  out_->content += s;
}

void OutputParser::emit_arguments(std::string_view s) {
  if (s.empty()) return;
  int index = static_cast<int>(calls_.size()) - 1;
  calls_.back().arguments += s;
  if (!out_->tool_calls.empty() && out_->tool_calls.back().index == index) {
    out_->tool_calls.back().arguments += s;
  } else {
    out_->tool_calls.push_back({.index = index, .id = "", .name = "", .arguments = std::string(s)});
  }
}

// --- Non-streaming ------------------------------------------------------------------------

namespace {

struct Item {
  Marker marker;     // None: a run of text
  std::string text;  // the run, decoded on its own
};

std::string join_text(std::span<const Item> items) {
  std::string s;
  for (const Item& it : items) s += it.text;
  return s;
}

// Written apart from v3_args_begin/v3_args_end on purpose: the split-invariance tests compare
// the two.
std::string v3_arguments(const std::string& body) {
  constexpr const char* kWs = " \t\n\r\f\v";
  size_t first = body.find_first_not_of(kWs);
  if (first == std::string::npos) return "";
  std::string args = body.substr(first);
  if (args.starts_with("```")) {
    size_t nl = args.find('\n');
    args = nl == std::string::npos ? "" : args.substr(nl + 1);
  }
  auto rstrip = [&] {
    size_t last = args.find_last_not_of(kWs);
    args.resize(last == std::string::npos ? 0 : last + 1);
  };
  rstrip();
  size_t last = args.find_last_not_of('`');
  size_t ticks = args.size() - (last == std::string::npos ? 0 : last + 1);
  args.resize(args.size() - std::min<size_t>(ticks, 3));
  rstrip();
  return args;
}

struct Parsed {
  std::string content;
  std::vector<ToolCall> calls;
};

// One call: the items after its call_begin, up to (not including) what ended it.
void parse_call(std::span<const Item> items, bool explicit_end, const OutputParserOptions& opts, Parsed& out) {
  auto sep = std::find_if(items.begin(), items.end(), [](const Item& it) { return it.marker == Marker::Sep; });
  bool has_sep = sep != items.end();
  std::string before = join_text(items.subspan(0, sep - items.begin()));
  std::string after = has_sep ? join_text(items.subspan(sep - items.begin() + 1)) : "";
  std::string head, args;
  bool named = false;
  if (opts.tools == ToolCallFormat::DeepSeekV3) {
    if (has_sep) {
      size_t nl = after.find('\n');
      if (nl != std::string::npos) {
        head = trim(std::string_view(after).substr(0, nl));
        args = v3_arguments(after.substr(nl + 1));
        named = true;
      } else if (explicit_end) {
        head = trim(after);
        named = true;
      }
    }
  } else if (has_sep || explicit_end) {
    head = trim(before);
    args = after;
    named = true;
  }
  if (!named || head.empty()) {
    out.content += before + after;
    return;
  }
  ToolCall call;
  if (opts.tools == ToolCallFormat::KimiK2) {
    call.id = head;
    call.name = kimi_tool_name(head, opts.tool_names);
  } else {
    call.id = opts.call_id_prefix + std::to_string(out.calls.size());
    call.name = head;
  }
  call.arguments = std::move(args);
  out.calls.push_back(std::move(call));
}

// Content and tool blocks (after reasoning).
Parsed parse_tools(std::span<const Item> items, const OutputParserOptions& opts) {
  Parsed out;
  auto is = [&](size_t i, Marker m) { return i < items.size() && items[i].marker == m; };
  size_t i = 0;
  while (i < items.size()) {
    if (items[i].marker == Marker::None) {
      out.content += items[i].text;
      ++i;
      continue;
    }
    if (is(i, Marker::ThinkBegin) || is(i, Marker::ThinkEnd)) {  // after reasoning: text
      out.content += is(i, Marker::ThinkBegin) ? kThinkBegin : kThinkEnd;
      ++i;
      continue;
    }
    if (!is(i, Marker::CallsBegin) && !is(i, Marker::CallBegin)) {  // stray marker
      ++i;
      continue;
    }
    if (is(i, Marker::CallsBegin)) ++i;
    // Inside a block until calls_end or the end of the output.
    while (i < items.size() && !is(i, Marker::CallsEnd)) {
      if (is(i, Marker::CallBegin)) {
        size_t end = i + 1;
        while (end < items.size() && !is(end, Marker::CallEnd) && !is(end, Marker::CallBegin) &&
               !is(end, Marker::CallsEnd)) {
          ++end;
        }
        parse_call(items.subspan(i + 1, end - i - 1), end < items.size(), opts, out);
        i = is(end, Marker::CallEnd) ? end + 1 : end;
        continue;
      }
      if (items[i].marker == Marker::None && has_non_ws(items[i].text)) out.content += items[i].text;
      ++i;
    }
    if (is(i, Marker::CallsEnd)) ++i;
  }
  return out;
}

}  // namespace

ParsedOutput parse_output(const Tokenizer& tok, const OutputParserOptions& opts, std::span<const int32_t> ids) {
  MarkerTable table = marker_table(tok, opts.tools, opts.reasoning);
  std::vector<Item> items;
  for (size_t i = 0; i < ids.size();) {
    Marker m = marker_of(table, ids[i]);
    if (m != Marker::None) {
      items.push_back({m, ""});
      ++i;
      continue;
    }
    size_t j = i;
    while (j < ids.size() && marker_of(table, ids[j]) == Marker::None) ++j;
    items.push_back({Marker::None, tok.decode(ids.subspan(i, j - i), opts.skip_special_tokens)});
    i = j;
  }

  std::span<const Item> rest(items);
  std::string reasoning;
  if (reasoning_active(table)) {
    auto end = std::find_if(items.begin(), items.end(), [](const Item& it) {
      return it.marker == Marker::ThinkEnd || it.marker == Marker::CallsBegin || it.marker == Marker::CallBegin;
    });
    size_t n = end - items.begin();
    reasoning = join_text(rest.subspan(0, n));
    rest = rest.subspan(end == items.end() || end->marker != Marker::ThinkEnd ? n : n + 1);
  }
  Parsed parsed = parse_tools(rest, opts);

  ParsedOutput r;
  if (!reasoning.empty()) r.reasoning = reasoning;
  if (!parsed.content.empty() || (parsed.calls.empty() && reasoning.empty())) r.content = parsed.content;
  r.tool_calls = std::move(parsed.calls);
  return r;
}

}  // namespace dsv3::serve
