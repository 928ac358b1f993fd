#include "serve/choice_output.h"

namespace dsv3::serve {

ChoiceOutput::ChoiceOutput(const Tokenizer& tok, const OutputParserOptions& opts, std::vector<std::string> stops,
                           bool include_stop)
    : parser_(tok, opts), stops_(std::move(stops)), include_stop_(include_stop) {}

OutputDelta ChoiceOutput::filter(OutputDelta d) {
  if (stops_.stopped()) return {};
  d.content = stops_.push(d.content);
  if (stops_.stopped() && include_stop_) d.content += stops_.matched();
  content_ += d.content;
  if (!d.reasoning.empty()) any_reasoning_ = true;
  reasoning_ += d.reasoning;
  for (const auto& tc : d.tool_calls) {
    if (size_t(tc.index) >= calls_.size()) calls_.resize(size_t(tc.index) + 1);
    ToolCall& c = calls_[size_t(tc.index)];
    if (!tc.id.empty()) c.id = tc.id;
    if (!tc.name.empty()) c.name = tc.name;
    c.arguments += tc.arguments;
  }
  return d;
}

OutputDelta ChoiceOutput::push(int32_t id) {
  if (stops_.stopped()) return {};
  const int32_t ids[1] = {id};
  return filter(parser_.push(ids));
}

OutputDelta ChoiceOutput::finish() {
  if (stops_.stopped()) return {};
  OutputDelta d = filter(parser_.finish());
  if (!stops_.stopped()) {
    const std::string tail = stops_.flush();
    d.content += tail;
    content_ += tail;
  }
  return d;
}

std::optional<std::string> ChoiceOutput::content() const {
  if (content_.empty() && (!calls_.empty() || any_reasoning_)) return std::nullopt;
  return content_;
}

std::optional<std::string> ChoiceOutput::reasoning() const {
  if (!any_reasoning_) return std::nullopt;
  return reasoning_;
}

}  // namespace dsv3::serve
