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
#include <tuple>
#include <type_traits>
#include <vector>

#include "tokenizer/regex.h"

namespace dsv3 {

class PreTokenizer {
 public:
  // Parses the "pre_tokenizer" object (null means no splitting).
  static PreTokenizer from_json(const nlohmann::json& j);

  // Calls `fn(word)` for each word of `text`, in order. Words may point into `text` or into
  // storage owned by this call; they are valid only during `fn`. Pieces flow depth first through
  // the steps, so memory stays small however long the text is.
  template <typename Fn>
  void split(std::string_view text, Fn&& fn) const {
    Work work;
    work.depth.resize(steps_.size());
    work.new_characters = has_new_characters(text);
    Sink sink{&fn, [](void* f, std::string_view w) { (*static_cast<std::remove_reference_t<Fn>*>(f))(w); }};
    run(0, text, work, sink);
  }

  // True when a ByteLevel step is present (the vocabulary is then byte-level).
  bool byte_level() const { return byte_level_; }

 private:
  enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };
  struct Step {
    enum class Kind { kSplit, kByteLevel } kind = Kind::kSplit;
    std::shared_ptr<Regex> regex;  // Split, or ByteLevel with use_regex
    Behavior behavior = Behavior::kIsolated;
    bool invert = false;
    bool add_prefix_space = false;
  };
  static void add_step(const nlohmann::json& j, const std::string& path, PreTokenizer& out);
  struct Sink {
    void* fn;
    void (*call)(void*, std::string_view);
  };
  // Scratch buffers of one split() call: one set per step, since steps nest.
  struct Depth {
    std::vector<std::pair<size_t, size_t>> matches;
    std::vector<std::tuple<size_t, size_t, bool>> spans;
  };
  struct Work {
    std::deque<std::string> storage;  // stable addresses for strings made while splitting
    MatchScratch scratch;
    std::vector<Depth> depth;
    bool new_characters = true;  // the text holds characters newer than PCRE2's Unicode tables
  };
  // Splits `piece` with step `k` and passes each part on to step k + 1 (or to the sink).
  void run(size_t k, std::string_view piece, Work& work, const Sink& sink) const;

  std::vector<Step> steps_;
  bool byte_level_ = false;
};

}  // namespace dsv3
