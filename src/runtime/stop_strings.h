// Stop strings over streamed text: text arrives in pieces (a streaming detokenizer's output);
// what cannot be the start of a stop string is released at once, the rest is held back until
// it either completes a stop string (generation stops, the stop string and anything after it
// are dropped, as OpenAI's API and transformers do) or turns out not to.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace dsv3 {

class StopStrings {
 public:
  explicit StopStrings(std::vector<std::string> stops);

  // Adds `piece`; returns the text that is now safe to show. After a stop string is found,
  // stopped() is true and later pieces are ignored.
  std::string push(std::string_view piece);
  // The held-back tail (at the end of generation, when no stop string completed it).
  std::string flush();
  bool stopped() const { return stopped_; }
  // The stop string that completed (empty before).
  const std::string& matched() const { return matched_; }
  // Everything released so far (the completion).
  const std::string& text() const { return released_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  std::string released_;
  std::string matched_;
  bool stopped_ = false;
};

}  // namespace dsv3
