#include "tokenizer/pre_tokenizer.h"

#include "base/error.h"
#include "io/json_get.h"

namespace dsv3 {
namespace {

// GPT-2's word regex, which ByteLevel applies when use_regex is true (Hugging Face
// tokenizers, pre_tokenizers/byte_level.rs).
constexpr const char* kByteLevelPattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

std::string escape_literal(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (std::string_view("\\^$.|?*+()[]{}-/").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

bool get_bool(const nlohmann::json& j, const char* key, bool fallback, const std::string& path) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_boolean()) fail("{}.{}: expected true or false, got {}", path, key, j[key].dump());
  return j[key].get<bool>();
}

}  // namespace

PreTokenizer PreTokenizer::from_json(const nlohmann::json& j) {
  PreTokenizer out;
  if (!j.is_null()) add_step(j, "pre_tokenizer", out);
  return out;
}

void PreTokenizer::add_step(const nlohmann::json& j, const std::string& path, PreTokenizer& out) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) fail("{}: expected an object with a 'type'", path);
  std::string type = j["type"];
  if (type == "Sequence") {
    if (!j.contains("pretokenizers") || !j["pretokenizers"].is_array()) fail("{}.pretokenizers: expected an array", path);
    for (size_t i = 0; i < j["pretokenizers"].size(); ++i) {
      add_step(j["pretokenizers"][i], fmt::format("{}.pretokenizers[{}]", path, i), out);
    }
  } else if (type == "Split") {
    Step s;
    s.kind = Step::Kind::kSplit;
    const auto& pat = j.value("pattern", nlohmann::json());
    std::string pcre;
    if (pat.is_object() && pat.contains("Regex") && pat["Regex"].is_string()) {
      pcre = onig_to_pcre2(pat["Regex"].get<std::string>());
    } else if (pat.is_object() && pat.contains("String") && pat["String"].is_string()) {
      pcre = escape_literal(pat["String"].get<std::string>());
    } else {
      fail("{}.pattern: expected {{\"Regex\": ...}} or {{\"String\": ...}}, got {}", path, pat.dump());
    }
    s.regex = std::make_shared<Regex>(pcre, path + ".pattern");
    std::string behavior = json_string(j, "behavior", "", path);
    if (behavior == "Removed") {
      s.behavior = Behavior::kRemoved;
    } else if (behavior == "Isolated") {
      s.behavior = Behavior::kIsolated;
    } else if (behavior == "MergedWithPrevious") {
      s.behavior = Behavior::kMergedWithPrevious;
    } else if (behavior == "MergedWithNext") {
      s.behavior = Behavior::kMergedWithNext;
    } else if (behavior == "Contiguous") {
      s.behavior = Behavior::kContiguous;
    } else {
      fail("{}.behavior: unsupported value '{}' (expected Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous)",
           path, behavior);
    }
    s.invert = get_bool(j, "invert", false, path);
    out.steps_.push_back(std::move(s));
  } else if (type == "ByteLevel") {
    Step s;
    s.kind = Step::Kind::kByteLevel;
    s.add_prefix_space = get_bool(j, "add_prefix_space", true, path);
    if (get_bool(j, "use_regex", true, path)) s.regex = std::make_shared<Regex>(onig_to_pcre2(kByteLevelPattern), path);
    out.steps_.push_back(std::move(s));
    out.byte_level_ = true;
  } else {
    fail("{}.type: unsupported pre-tokenizer '{}' (supported: Sequence, Split, ByteLevel)", path, type);
  }
}

void PreTokenizer::run(size_t k, std::string_view piece, Work& work, const Sink& sink) const {
  if (k == steps_.size()) {
    if (!piece.empty()) sink.call(sink.fn, piece);
    return;
  }
  const Step& step = steps_[k];
  auto next = [&](size_t b, size_t e) {
    if (e > b) run(k + 1, piece.substr(b, e - b), work, sink);
  };
  if (step.kind == Step::Kind::kByteLevel) {
    if (step.add_prefix_space && (piece.empty() || piece[0] != ' ')) {
      std::string& spaced = work.storage.emplace_back(1, ' ');
      spaced.append(piece);
      piece = work.storage.back();
    }
    if (!step.regex) return next(0, piece.size());
  }
  Depth& d = work.depth[k];
  d.matches.clear();
  step.regex->find_all(piece, d.matches, work.scratch, work.new_characters);
  Behavior behavior = step.kind == Step::Kind::kByteLevel ? Behavior::kIsolated : step.behavior;
  if (behavior == Behavior::kIsolated) {
    // The common case, without building spans: gaps and matches alike become pieces.
    size_t prev = 0;
    for (auto [b, e] : d.matches) {
      next(prev, b);
      next(b, e);
      prev = e;
    }
    return next(prev, piece.size());
  }
  // (begin, end, is_match) spans covering the piece.
  auto& spans = d.spans;
  spans.clear();
  size_t prev = 0;
  for (auto [b, e] : d.matches) {
    if (prev < b) spans.emplace_back(prev, b, step.invert);
    spans.emplace_back(b, e, !step.invert);
    prev = e;
  }
  if (prev < piece.size()) spans.emplace_back(prev, piece.size(), step.invert);
  // `spans` may be reused by deeper steps' recursion only at other depths: iterate a copy-free
  // index loop over this depth's vector.
  switch (behavior) {
    case Behavior::kIsolated: break;
    case Behavior::kRemoved:
      for (size_t i = 0; i < spans.size(); ++i) {
        auto [b, e, m] = spans[i];
        if (!m) next(b, e);
      }
      break;
    case Behavior::kMergedWithPrevious: {
      // A delimiter joins the piece before it.
      size_t start = 0;
      bool have = false;
      for (size_t i = 0; i < spans.size(); ++i) {
        auto [b, e, m] = spans[i];
        if (m && have) {
          next(start, e);
          have = false;
        } else if (m) {
          next(b, e);
        } else {
          if (have) next(start, b);
          start = b;
          have = true;
        }
      }
      if (have) next(start, piece.size());
      break;
    }
    case Behavior::kMergedWithNext: {
      // A delimiter joins the piece after it.
      size_t start = 0;
      bool pending = false;
      for (size_t i = 0; i < spans.size(); ++i) {
        auto [b, e, m] = spans[i];
        if (m) {
          if (pending) next(start, b);
          start = b;
          pending = true;
        } else if (pending) {
          next(start, e);
          pending = false;
        } else {
          next(b, e);
        }
      }
      if (pending) next(start, piece.size());
      break;
    }
    case Behavior::kContiguous: {
      // Consecutive delimiters form one piece.
      size_t i = 0;
      while (i < spans.size()) {
        auto [b, e, m] = spans[i];
        size_t j = i + 1;
        if (m) {
          while (j < spans.size() && std::get<2>(spans[j])) e = std::get<1>(spans[j++]);
        }
        next(b, e);
        i = j;
      }
      break;
    }
  }
}

}  // namespace dsv3
