#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <filesystem>

#include "base/error.h"
#include "io/json_file.h"
#include "io/json_get.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/regex.h"
#include "tokenizer/tiktoken.h"
#include "tokenizer/utf8.h"

namespace dsv3 {
namespace {

// Token ids above this are refused: the decode table holds one entry per id, so an id of
// 2^31 - 1 would ask for 64 GiB. 16x the largest published vocabulary (262144).
constexpr int64_t kMaxTokenId = (int64_t(1) << 22) - 1;

// The normalizers this model family uses: none, or an empty Sequence.
void check_normalizer(const nlohmann::json& j, const std::string& path) {
  if (j.is_null()) return;
  std::string type = json_string(j, "type", "", path);
  if (type == "Sequence" && j.contains("normalizers") && j["normalizers"].is_array()) {
    for (size_t i = 0; i < j["normalizers"].size(); ++i) {
      check_normalizer(j["normalizers"][i], fmt::format("{}.normalizers[{}]", path, i));
    }
    return;
  }
  fail("{}: unsupported normalizer '{}' (supported: null or a Sequence of none)", path, type.empty() ? j.dump() : type);
}

bool get_bool(const nlohmann::json& j, const char* key, bool fallback, const std::string& path) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_boolean()) fail("{}.{}: expected true or false, got {}", path, key, j[key].dump());
  return j[key].get<bool>();
}

std::vector<AddedToken> parse_added_tokens(const nlohmann::json& j, const std::string& name) {
  std::vector<AddedToken> out;
  if (j.is_null()) return out;
  if (!j.is_array()) fail("{}: added_tokens: expected an array", name);
  for (size_t i = 0; i < j.size(); ++i) {
    std::string path = fmt::format("{}: added_tokens[{}]", name, i);
    const auto& t = j[i];
    if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer() || !t.contains("content") ||
        !t["content"].is_string()) {
      fail("{}: expected an object with integer 'id' and string 'content'", path);
    }
    AddedToken a;
    a.id = int32_t(json_as_integer(t["id"], path + ".id", 0, kMaxTokenId));
    a.content = t["content"].get<std::string>();
    a.special = get_bool(t, "special", false, path);
    a.lstrip = get_bool(t, "lstrip", false, path);
    a.rstrip = get_bool(t, "rstrip", false, path);
    a.single_word = get_bool(t, "single_word", false, path);
    a.normalized = get_bool(t, "normalized", !a.special, path);
    out.push_back(std::move(a));
  }
  return out;
}

}  // namespace

Tokenizer Tokenizer::load(const std::string& dir, const TokenizerOptions& options) {
  namespace fs = std::filesystem;
  const fs::path tj = fs::path(dir) / "tokenizer.json";
  const fs::path tt = fs::path(dir) / "tiktoken.model";
  const fs::path tc = fs::path(dir) / "tokenizer_config.json";
  const fs::path jinja = fs::path(dir) / "chat_template.jinja";
  if (!fs::exists(tj) && !fs::exists(tt)) {
    if (!fs::is_directory(dir)) fail("tokenizer: '{}' does not exist or is not a directory", dir);
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file() && e.path().extension() != ".safetensors") names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    std::string found;
    for (size_t i = 0; i < names.size() && i < 20; ++i) found += (i ? ", " : "") + names[i];
    if (names.size() > 20) found += fmt::format(", ... ({} files)", names.size());
    fail("tokenizer: '{}' has no usable tokenizer: dsv3 reads tokenizer.json (Hugging Face tokenizers) or "
         "tiktoken.model (tiktoken, as Kimi-K2 and Moonlight ship); found {}",
         dir, found.empty() ? "no files besides weights" : found);
  }
  TokenizerConfig config = fs::exists(tc) ? TokenizerConfig::load(tc.string()) : TokenizerConfig{};
  // transformers reads chat_template.jinja beside the tokenizer files and prefers it.
  if (fs::exists(jinja)) {
    config.chat_templates["default"] = read_text_file(jinja.string());
    config.chat_template_source = jinja.filename().string();
  }
  if (fs::exists(tj)) return from_json(read_json_file(tj.string()), std::move(config), tj.string());
  const std::string text = read_text_file(tt.string());
  const std::string pattern = with_context(tt.string(), [&] {
    return resolve_tiktoken_pattern(options.tiktoken_pattern.empty() ? "kimi" : options.tiktoken_pattern);
  });
  return from_tiktoken(text, pattern, std::move(config), tt.string());
}

Tokenizer Tokenizer::from_tiktoken(std::string_view model_text, const std::string& pattern, TokenizerConfig config,
                                   const std::string& name) {
  Tokenizer t;
  t.config_ = std::move(config);
  auto bpe = std::make_shared<TiktokenBpe>(model_text, name);
  bpe->set_kimi_presplit(pattern == tiktoken_pattern("kimi"));
  t.tiktoken_ = std::move(bpe);
  t.tiktoken_split_ = std::make_shared<const Regex>(pattern, name + ": split pattern");
  const int32_t n_ranks = t.tiktoken_->n_ranks();
  // Special tokens: tokenizer_config.json's added_tokens_decoder, and Kimi's rule for the ids
  // after the ranks (Kimi-K2's and Moonlight's tokenization_kimi.py: num_reserved_special_tokens
  // = 256, so 163584 ranks + 256 = the config's vocab_size 163840; Kimi-Linear's script reserves
  // 2 more, which its added_tokens_decoder names).
  constexpr int32_t kReserved = 256;
  std::vector<AddedToken> added;
  std::vector<bool> named(size_t(n_ranks + kReserved), false);
  for (AddedToken a : t.config_.added_tokens_decoder) {
    if (a.id < n_ranks && t.tiktoken_->bytes_of(a.id) != a.content)
      fail("{}: added_tokens_decoder id {} ('{}') is a ranked token of tiktoken.model with other bytes", name, a.id,
           a.content);
    // tiktoken matches special tokens as plain strings (no stripping of neighbouring spaces).
    a.lstrip = a.rstrip = a.single_word = false;
    a.normalized = false;
    if (size_t(a.id) < named.size()) named[size_t(a.id)] = true;
    added.push_back(std::move(a));
  }
  for (int32_t id = n_ranks; id < n_ranks + kReserved; ++id)
    if (!named[size_t(id)])
      added.push_back(AddedToken{.content = fmt::format("<|reserved_token_{}|>", id), .id = id, .special = true});
  size_t n = size_t(n_ranks);
  for (const AddedToken& a : added) n = std::max(n, size_t(a.id) + 1);
  t.decode_bytes_.resize(n);
  t.special_.assign(n, false);
  for (int32_t r = 0; r < n_ranks; ++r) t.decode_bytes_[size_t(r)] = t.tiktoken_->bytes_of(r);
  for (const AddedToken& a : added) {
    t.decode_bytes_[size_t(a.id)] = a.content;
    t.special_[size_t(a.id)] = a.special;
  }
  t.added_ = std::make_shared<const AddedTokens>(std::move(added));
  t.pre_tokenizer_ = nullptr;
  t.finish_special_ids(name);
  return t;
}

Tokenizer Tokenizer::from_json(const nlohmann::json& j, TokenizerConfig config, const std::string& name) {
  if (!j.is_object()) fail("{}: expected a JSON object", name);
  Tokenizer t;
  t.config_ = std::move(config);
  check_normalizer(j.value("normalizer", nlohmann::json()), name + ": normalizer");
  t.pre_tokenizer_ = std::make_shared<PreTokenizer>(
      with_context(name, [&] { return PreTokenizer::from_json(j.value("pre_tokenizer", nlohmann::json())); }));
  bool byte_level = t.pre_tokenizer_->byte_level();

  const auto& dec = j.value("decoder", nlohmann::json());
  if (dec.is_null()) {
    t.byte_level_decoder_ = false;
  } else if (dec.is_object() && json_string(dec, "type", "", name + ": decoder") == "ByteLevel") {
    t.byte_level_decoder_ = true;
  } else {
    fail("{}: decoder: unsupported type {} (supported: ByteLevel or null)", name,
         dec.is_object() ? json_string(dec, "type", "?", name + ": decoder") : json_excerpt(dec));
  }

  // Model: byte-level BPE.
  if (!j.contains("model") || !j["model"].is_object()) fail("{}: 'model' is missing", name);
  const auto& m = j["model"];
  const std::string model_type = json_string(m, "type", "BPE", name + ": model");
  if (model_type != "BPE") fail("{}: model.type: unsupported '{}' (supported: BPE)", name, model_type);
  if (!byte_level) fail("{}: pre_tokenizer: no ByteLevel step; only byte-level BPE is supported", name);
  if (json_number(m, "dropout", 0.0, name + ": model") != 0.0) {
    fail("{}: model.dropout: must be null for inference, got {}", name, m["dropout"].dump());
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (m.contains(key) && !m[key].is_null() && m[key] != "") fail("{}: model.{}: unsupported (must be null)", name, key);
  }
  if (!m.contains("vocab") || !m["vocab"].is_object()) fail("{}: model.vocab: expected an object", name);
  std::vector<std::string> vocab;
  std::vector<std::string> vocab_text;  // as written in the file, for merges
  for (const auto& [tok, idj] : m["vocab"].items()) {
    if (!idj.is_number_integer()) fail("{}: model.vocab['{}']: expected a non-negative integer id", name, tok);
    const auto id = size_t(json_as_integer(idj, fmt::format("{}: model.vocab['{}']", name, tok), 0, kMaxTokenId));
    if (id >= vocab.size()) {
      vocab.resize(id + 1);
      vocab_text.resize(id + 1);
    }
    vocab[id] = byte_level_to_bytes(tok).value_or(tok);
    vocab_text[id] = tok;
  }
  std::unordered_map<std::string_view, int32_t> text_ids;
  for (size_t i = 0; i < vocab_text.size(); ++i) {
    if (!vocab_text[i].empty()) text_ids.emplace(vocab_text[i], static_cast<int32_t>(i));
  }
  std::vector<Bpe::Merge> merges;
  const auto& mj = m.value("merges", nlohmann::json::array());
  if (!mj.is_array()) fail("{}: model.merges: expected an array", name);
  merges.reserve(mj.size());
  for (size_t r = 0; r < mj.size(); ++r) {
    std::string a, b;
    if (mj[r].is_string()) {
      const std::string& s = mj[r].get_ref<const std::string&>();
      size_t sp = s.find(' ');
      if (sp == std::string::npos) fail("{}: model.merges[{}]: expected \"left right\", got '{}'", name, r, s);
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (mj[r].is_array() && mj[r].size() == 2 && mj[r][0].is_string() && mj[r][1].is_string()) {
      a = mj[r][0];
      b = mj[r][1];
    } else {
      fail("{}: model.merges[{}]: expected \"left right\" or [left, right], got {}", name, r, mj[r].dump());
    }
    auto ia = text_ids.find(a), ib = text_ids.find(b);
    if (ia == text_ids.end() || ib == text_ids.end()) {
      fail("{}: model.merges[{}]: '{}' is not in the vocabulary", name, r, ia == text_ids.end() ? a : b);
    }
    merges.push_back({ia->second, ib->second});
  }
  t.bpe_ = with_context(name + ": model", [&] {
    return std::make_shared<const Bpe>(vocab, merges, get_bool(m, "ignore_merges", false, "model"));
  });

  // Added tokens and the decode table.
  std::vector<AddedToken> added = parse_added_tokens(j.value("added_tokens", nlohmann::json()), name);
  size_t n = vocab.size();
  for (const AddedToken& a : added) n = std::max(n, static_cast<size_t>(a.id) + 1);
  t.decode_bytes_.resize(n);
  t.special_.assign(n, false);
  for (size_t i = 0; i < vocab.size(); ++i) {
    t.decode_bytes_[i] = t.byte_level_decoder_ ? vocab[i] : vocab_text[i];
  }
  for (const AddedToken& a : added) {
    t.decode_bytes_[a.id] = t.byte_level_decoder_ ? byte_level_to_bytes(a.content).value_or(a.content) : a.content;
    t.special_[a.id] = a.special;
  }
  t.added_ = std::make_shared<const AddedTokens>(std::move(added));

  t.finish_special_ids(name);
  return t;
}

void Tokenizer::finish_special_ids(const std::string& name) {
  auto id_of = [&](const std::optional<std::string>& s) { return s ? token_to_id(*s) : -1; };
  bos_id_ = id_of(config_.bos_token);
  eos_id_ = id_of(config_.eos_token);
  pad_id_ = id_of(config_.pad_token);
  if (config_.add_bos_token && bos_id_ < 0) fail("{}: add_bos_token is set but bos_token is not a known token", name);
  if (config_.add_eos_token && eos_id_ < 0) fail("{}: add_eos_token is set but eos_token is not a known token", name);
}

int32_t Tokenizer::token_to_id(std::string_view token_text) const {
  if (const AddedToken* a = added_->find_content(token_text)) return a->id;
  // Vocabulary entries are written in GPT-2's byte-level alphabet, also for tiktoken (Kimi's
  // get_vocab() does the same).
  auto bytes = byte_level_to_bytes(token_text);
  const std::string_view b = bytes ? std::string_view(*bytes) : token_text;
  return tiktoken_ ? tiktoken_->rank_of(b) : bpe_->token_to_id(b);
}

void Tokenizer::encode_text(std::string_view text, std::vector<int32_t>& out) const {
  std::vector<AddedTokens::Span> raw, norm;
  if (tiktoken_) {
    // tiktoken encodes the matches of its pattern and nothing between them (the patterns match
    // every character). Kimi's script cuts long texts first and encodes each piece with
    // tiktoken, special tokens included (allowed_special="all").
    MatchScratch scratch;
    std::vector<std::pair<size_t, size_t>> matches;
    auto encode_segment = [&](std::string_view segment) {
      raw.clear();
      added_->split(segment, /*normalized=*/false, raw);
      for (const auto& r : raw) {
        if (r.id >= 0) {
          out.push_back(r.id);
          continue;
        }
        const std::string_view piece = segment.substr(r.begin, r.end - r.begin);
        matches.clear();
        tiktoken_split_->find_all(piece, matches, scratch, /*substitute=*/true);
        for (const auto& [b, e] : matches) tiktoken_->encode_piece(piece.substr(b, e - b), out);
      }
    };
    if (tiktoken_->kimi_presplit()) kimi_presplit(text, encode_segment);
    else encode_segment(text);
    return;
  }
  added_->split(text, /*normalized=*/false, raw);
  for (const auto& r : raw) {
    if (r.id >= 0) {
      out.push_back(r.id);
      continue;
    }
    std::string_view piece = text.substr(r.begin, r.end - r.begin);
    norm.clear();
    added_->split(piece, /*normalized=*/true, norm);  // the normalizer is the identity here
    for (const auto& s : norm) {
      if (s.id >= 0) {
        out.push_back(s.id);
        continue;
      }
      pre_tokenizer_->split(piece.substr(s.begin, s.end - s.begin), [&](std::string_view word) { bpe_->encode_word(word, out); });
    }
  }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special) const {
  size_t bad = find_invalid_utf8(text);
  if (bad != std::string_view::npos) {
    fail("input is not valid UTF-8: byte 0x{:02X} at byte offset {}", static_cast<unsigned char>(text[bad]), bad);
  }
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_special && config_.add_bos_token) out.push_back(bos_id_);
  encode_text(text, out);
  if (add_special && config_.add_eos_token) out.push_back(eos_id_);
  return out;
}

std::string_view Tokenizer::token_bytes(int32_t id, bool skip_special) const {
  if (id < 0 || id >= vocab_size()) return {};
  if (skip_special && special_[id]) return {};
  return decode_bytes_[id];
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string bytes;
  if (byte_level_decoder_) {
    for (int32_t id : ids) bytes.append(token_bytes(id, skip_special));
    return utf8_lossy(bytes);
  }
  // No decoder: Hugging Face joins the token strings with spaces.
  bool first = true;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size() || (skip_special && special_[id]) || decode_bytes_[id].empty()) continue;
    if (!first) bytes += ' ';
    bytes += decode_bytes_[id];
    first = false;
  }
  return bytes;
}

}  // namespace dsv3
