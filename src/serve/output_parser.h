// Generated token ids of one choice -> OpenAI `reasoning_content`, `content` and `tool_calls`,
// incrementally (streaming deltas) or at once, with the same result for every way of cutting
// the ids into pushes (SERVER.md §2.2 "dsv3 invariant").
//
//   OutputParser p(tok, {.tools = ToolCallFormat::DeepSeekV3, .call_id_prefix = "call_abc_"});
//   for (each step) send(p.push(new_ids));      // OutputDelta: reasoning / content / tool-call pieces
//   send(p.finish());                            // flushes held-back text at the end of generation
//   ParsedOutput all = p.result();               // == parse_output(tok, opts, all_ids)
//
// Markers are token ids, never text (SERVER.md §2.2): a marker's text written as ordinary BPE
// pieces is plain text, and a marker id never shows as text, whatever skip_special_tokens says.
//
// Output grammar (DeepSeek: SERVER.md §2.1; sglang deepseekv3/deepseekv31/kimik2 detectors):
//   V3/R1   <｜tool▁calls▁begin｜>(<｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\nARGS\n```<｜tool▁call▁end｜>\n?)*<｜tool▁calls▁end｜>
//   V3.1    <｜tool▁calls▁begin｜>(<｜tool▁call▁begin｜>NAME<｜tool▁sep｜>ARGS<｜tool▁call▁end｜>)*<｜tool▁calls▁end｜>
//   Kimi-K2 <|tool_calls_section_begin|>(<|tool_call_begin|>ID<|tool_call_argument_begin|>ARGS<|tool_call_end|>)*<|tool_calls_section_end|>
//           (<|tool_call_section_begin|> is accepted too; lcpp PR #17376)
//   R1      [<think>] REASONING </think> (content and tool block as above)
//
// Rules, applied identically by OutputParser and parse_output:
// - Text is the tokenizer's byte-level decoding of the ids between markers; each run of text
//   between two markers is decoded on its own (an unfinished UTF-8 character before a marker or
//   at the end becomes U+FFFD, as Tokenizer::decode does). Deltas carry whole characters only.
// - Reasoning (DeepSeekR1): everything before the first `</think>` is reasoning; `<think>` is
//   swallowed wherever it appears. The tool block's start (calls_begin, or a call_begin without
//   it) ends reasoning implicitly (SERVER.md §2.3). Without `</think>` all output is reasoning.
// - Content is the text outside tool blocks. Inside a block, text between calls is dropped when
//   it is only whitespace (V3's "\n" separators), otherwise it is content. A call_begin outside
//   a block opens one implicitly; text after calls_end is content again.
// - A call runs from call_begin to call_end, the next call_begin, calls_end, or the end of the
//   output. Its name ends at its delimiter (V3: the first "\n" after tool_sep, the text before
//   tool_sep being the type "function"; V3.1: tool_sep; Kimi: argument_begin) or at an explicit
//   end of the call (then the arguments are ""). A call whose name is empty after trimming
//   whitespace, a V3 call without tool_sep, or a call cut by the end of the output before its
//   name ended is not a tool call: its text (without markers) is appended to content.
//   A call cut after its name keeps the arguments written so far.
// - Arguments are passed through as written (never re-serialised). V3 only: leading whitespace
//   and an opening fence line "```json\n" (any language tag) are dropped, and so are the closing
//   fence (up to three backticks at the end, so a fence cut by max_tokens too) and whitespace
//   around it; streaming holds back a trailing run of whitespace and backticks until it is
//   known not to be that fence.
// - After reasoning ended, `<think>`/`</think>` outside tool blocks are content text (a second
//   `</think>` stays in the answer, as vLLM and SGLang split). Other stray markers (a tool_sep
//   outside a call header, calls_begin inside a block, ...) are dropped; all end a run of text.
// - Ids: V3/V3.1 calls get call_id_prefix + index (index counts calls in the output from 0).
//   Kimi calls keep the ID as the model wrote it (clients must echo it back; SERVER.md §2.1);
//   the name comes from kimi_tool_name().
// - ParsedOutput: reasoning is set iff there is reasoning text; content is nullopt iff there is
//   no content text and there are tool calls or reasoning; otherwise it is the text (maybe "").
// Assumes a byte-level decoder (DeepSeek and converted Kimi tokenizers have one).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace dsv3::serve {

enum class ToolCallFormat { None, DeepSeekV3, DeepSeekV31, KimiK2 };
enum class ReasoningFormat { None, DeepSeekR1 };
// What --reasoning-parser asks for. DeepSeekV3 is vLLM's `deepseek_v3` reasoning parser:
// DeepSeekR1 parsing for requests whose chat_template_kwargs turn thinking on, else none.
enum class ReasoningParserChoice { Auto, None, DeepSeekR1, DeepSeekV3 };

// --tool-call-parser: auto, none, deepseek_v3, deepseek_v31, kimi_k2, in vLLM's spelling or
// SGLang's (deepseekv3, deepseekv31; '-' and '_' are interchangeable, case is ignored).
// nullopt = auto. Throws Error naming the flag and listing the valid names otherwise.
std::optional<ToolCallFormat> parse_tool_call_parser(std::string_view name);
// --reasoning-parser: auto, none, deepseek_r1 (deepseek-r1, deepseekr1), deepseek_v3 (deepseek-v3).
ReasoningParserChoice parse_reasoning_parser(std::string_view name);
const char* to_string(ToolCallFormat f);         // the vLLM name: "deepseek_v3", ...
const char* to_string(ReasoningParserChoice c);  // "auto", "none", "deepseek_r1", "deepseek_v3"

struct ParserSelection {
  ToolCallFormat tools = ToolCallFormat::None;
  ReasoningParserChoice reasoning = ReasoningParserChoice::None;
  std::string why;  // one line for the server log: which rule chose what
};

// `auto` for both flags, from the chat template's source text and the tokenizer's vocabulary.
// Tools (only when every marker of the format is a single token of `tok`):
//   template mentions tool_calls_section_begin / tool_call_section_begin -> KimiK2;
//   else template mentions tool▁call▁begin: with a "```json" fence -> DeepSeekV3 (V3, R1),
//   without one -> DeepSeekV31 (V3.1 writes NAME<｜tool▁sep｜>ARGS, no 'function', no fence);
//   else None.
// Reasoning (only when `<think>` and `</think>` are single tokens of `tok`):
//   template uses a `thinking` variable (V3.1's hybrid switch) -> DeepSeekV3 (per request);
//   else template contains "<think>" (R1's generation prompt or history stripping) -> DeepSeekR1;
//   else None.
ParserSelection detect_parsers(std::string_view chat_template, const Tokenizer& tok);

// The reasoning format of one request. DeepSeekV3 -> DeepSeekR1 when chat_template_kwargs has
// `thinking` or `enable_thinking` truthy as Jinja sees it (the template renders the same value),
// else None. `choice` must not be Auto (resolve it with detect_parsers first).
ReasoningFormat reasoning_for_request(ReasoningParserChoice choice, const nlohmann::json& chat_template_kwargs);

// Throws Error (naming --tool-call-parser / --reasoning-parser) when a marker the format needs is
// not a single token of `tok`; for explicit flags at server start. The parser itself treats a
// missing marker as never occurring (and R1 without a `</think>` token as no reasoning).
void check_parser_tokens(const Tokenizer& tok, ToolCallFormat tools, ReasoningParserChoice reasoning);

// The function name in a Kimi-K2 tool-call id:
//   "functions.NAME:IDX" -> NAME; "functions" + optional '.'/'_' + NAME + optional ':'/'_' + digits
//   -> NAME (model-rewritten forms such as "functionsexec5", "functions_get_weather_1";
//   sgl PR #21377, exo #2281), except that a candidate found in `tool_names` before the digits are
//   stripped wins ("functionsget_v2" with tool get_v2). Ids with no name in them ("call00003", "3";
//   sgl PR #25362): the id when it is in `tool_names`, the only tool when there is exactly one,
//   else the id itself, so that the client sees what the model wrote.
std::string kimi_tool_name(std::string_view id, std::span<const std::string> tool_names = {});

namespace detail {
// What a marker id means (not how it is parsed); shared by OutputParser and parse_output. Kimi's
// section_begin/section_end/call_begin/argument_begin/call_end map to the DeepSeek kinds.
enum class Marker : uint8_t { None, ThinkBegin, ThinkEnd, CallsBegin, CallsEnd, CallBegin, CallEnd, Sep };
}  // namespace detail

// id+name only in a call's first delta (arguments possibly "").
struct ToolCallDelta {
  int index = 0;
  std::string id;
  std::string name;
  std::string arguments;
};
struct OutputDelta {
  std::string reasoning;
  std::string content;
  std::vector<ToolCallDelta> tool_calls;
  bool empty() const { return reasoning.empty() && content.empty() && tool_calls.empty(); }
};
struct ToolCall {
  std::string id, name, arguments;
};
struct ParsedOutput {
  std::optional<std::string> reasoning;
  std::optional<std::string> content;
  std::vector<ToolCall> tool_calls;
};

struct OutputParserOptions {
  ToolCallFormat tools = ToolCallFormat::None;
  ReasoningFormat reasoning = ReasoningFormat::None;
  bool skip_special_tokens = true;      // as Tokenizer::decode; the parser's markers are never shown
  std::string call_id_prefix;           // V3/V3.1 ids: prefix + index ("call_<requestid>_0")
  std::vector<std::string> tool_names;  // the request's tools; only kimi_tool_name uses them
};

class OutputParser {
 public:
  OutputParser(const Tokenizer& tok, OutputParserOptions opts);  // tok outlives the parser
  // Any number of generated ids (one token, several, all). Not after finish().
  OutputDelta push(std::span<const int32_t> ids);
  // End of generation: flushes held-back text and closes an open call. Once.
  OutputDelta finish();
  // All deltas so far merged (the final answer after finish()).
  ParsedOutput result() const;

 private:
  using Marker = detail::Marker;
  enum class State : uint8_t {
    Reasoning,  // before </think>
    Content,    // outside a tool block
    Block,      // inside a tool block, between calls
    Header,     // call_begin seen; V3: the type before tool_sep, else the name/id before its delimiter
    Name,       // V3: after tool_sep, before the "\n" that ends the name
    Body,       // arguments
    NotACall,   // a call that turned out malformed: its text goes to content
  };

  void on_text(const std::string& text);
  void on_marker(Marker m);
  void end_call(bool explicit_end);
  void start_call(std::string_view head);
  void not_a_call();
  void append_body(std::string_view text);
  void emit_reasoning(std::string_view s);
  void emit_content(std::string_view s);
  void emit_arguments(std::string_view s);

  const Tokenizer& tok_;
  OutputParserOptions opts_;
  std::vector<std::pair<int32_t, Marker>> markers_;
  State state_;
  bool finished_ = false;
  std::string pending_;         // bytes of an unfinished UTF-8 character
  OutputDelta* out_ = nullptr;  // the delta being built by push/finish

  std::string gap_;  // Block: whitespace between calls, dropped unless text follows
  bool gap_shown_ = false;
  std::string call_text_;                  // the current call's text while it may still turn out not to be a call
  std::string head_;                       // V3.1/Kimi: name/id text; V3: text after tool_sep
  std::string body_;                       // V3: raw text after the name's "\n"
  size_t args_begin_ = std::string::npos;  // V3: where the arguments start in body_ (npos: undecided)
  size_t solid_end_ = 0;                   // V3: end of body_'s last character that is neither whitespace nor '`'
  size_t args_sent_ = 0;                   // V3: bytes of arguments emitted

  std::string reasoning_all_, content_all_;
  std::vector<ToolCall> calls_;
};

// Non-streaming parse, written independently of OutputParser's state machine (markers located
// in the whole id list, then split); the oracle of the split-invariance tests.
ParsedOutput parse_output(const Tokenizer& tok, const OutputParserOptions& opts, std::span<const int32_t> ids);

}  // namespace dsv3::serve
