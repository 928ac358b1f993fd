// Pre-tokenizer (tokenizer.json "pre_tokenizer"): splits text into the words that BPE sees.
// Supported: Sequence, Split (Regex or String pattern, every behaviour, invert), ByteLevel
// (add_prefix_space, use_regex). Byte-level's byte-to-character mapping is not done here: the
// BPE vocabulary is stored as raw bytes instead (see bpe.h).
#pragma once

#include <deque>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/regex.h"

namespace dsv3 {

class PreTokenizer {
 public:
  // Parses the "pre_tokenizer" object (null means no splitting).
  static PreTokenizer from_json(const nlohmann::json& j);

  // Calls `fn(word)` for each word of `text`, in order. Words may point into `text` or into
  // storage owned by this call; they are valid only during `fn`.
  template <typename Fn>
  void split(std::string_view text, Fn&& fn) const;

  // True when a ByteLevel step is present (the vocabulary is then byte-level).
  bool byte_level() const { return byte_level_; }

 private:
  enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };
  struct Step {
    enum class Kind { kSplit, kByteLevel } kind;
    std::shared_ptr<Regex> regex;  // Split, or ByteLevel with use_regex
    Behavior behavior = Behavior::kIsolated;
    bool invert = false;
    bool add_prefix_space = false;
  };
  static void add_step(const nlohmann::json& j, const std::string& path, PreTokenizer& out);
  void apply(const Step& step, std::vector<std::string_view>& pieces, std::deque<std::string>& storage) const;

  std::vector<Step> steps_;
  bool byte_level_ = false;
};

template <typename Fn>
void PreTokenizer::split(std::string_view text, Fn&& fn) const {
  std::vector<std::string_view> pieces{text};
  std::deque<std::string> storage;  // stable addresses for strings made while splitting
  for (const Step& step : steps_) apply(step, pieces, storage);
  for (std::string_view p : pieces) fn(p);
}

}  // namespace dsv3
