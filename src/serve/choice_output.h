// One choice's output as it is generated: token ids -> OutputParser (UTF-8 hold-back,
// reasoning, tool calls) -> stop strings over the content. Streaming sends each push()'s delta;
// a non-streaming response is the concatenation of the same deltas, so both are equal byte for
// byte by construction. Stop strings apply to `content` only (not to reasoning or tool-call
// arguments): the text a user reads is what `stop` is for.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "runtime/stop_strings.h"
#include "serve/output_parser.h"

namespace dsv3::serve {

class ChoiceOutput {
 public:
  // include_stop: the completed stop string stays at the end of the content
  // (vLLM's include_stop_str_in_output).
  ChoiceOutput(const Tokenizer& tok, const OutputParserOptions& opts, std::vector<std::string> stops,
               bool include_stop = false);

  // The delta this token adds (possibly empty). After a stop string completed, stopped() is true
  // and later tokens add nothing.
  OutputDelta push(int32_t id);
  // End of generation: the held-back rest.
  OutputDelta finish();
  bool stopped() const { return stops_.stopped(); }

  // Everything sent so far, merged. content is null when there was no content text and the
  // output held tool calls or reasoning (OpenAI's message.content: null).
  std::optional<std::string> content() const;
  std::optional<std::string> reasoning() const;
  const std::vector<ToolCall>& tool_calls() const { return calls_; }

 private:
  OutputDelta filter(OutputDelta d);

  OutputParser parser_;
  StopStrings stops_;
  bool include_stop_;
  std::string content_, reasoning_;
  bool any_reasoning_ = false;
  std::vector<ToolCall> calls_;
};

}  // namespace dsv3::serve
