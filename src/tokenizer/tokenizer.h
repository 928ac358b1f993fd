// Text <-> token ids, identical to Hugging Face `tokenizers` for byte-level BPE files
// (DeepSeek-V2/V3/R1 family) and to tiktoken for tiktoken.model files (Kimi-K2, Moonlight), plus
// transformers' BOS/EOS rule from tokenizer_config.json.
//
//   Tokenizer tok = Tokenizer::load("/models/DeepSeek-V3");   // tokenizer.json + tokenizer_config.json
//   std::vector<int32_t> ids = tok.encode("Hello", /*add_special=*/true);   // [0, 19923]
//   std::string text = tok.decode(ids, /*skip_special=*/true);            // "Hello"
//
// Thread safety: a loaded Tokenizer is immutable; encode/decode may run concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/tokenizer_config.h"

namespace dsv3 {

class TiktokenBpe;
class Regex;

struct TokenizerOptions {
  // For tiktoken.model tokenizers: the split pattern's name (kimi, o200k_base, cl100k_base) or the
  // pattern itself; "" = kimi. The pattern is code in the model's tokenizer script, not data.
  std::string tiktoken_pattern;
};

class Tokenizer {
 public:
  // Reads DIR/tokenizer.json, or else DIR/tiktoken.model, with DIR/tokenizer_config.json (may be
  // absent) and DIR/chat_template.jinja (when present it is the default chat template, as in
  // transformers). With neither tokenizer file, the error lists the files DIR has.
  static Tokenizer load(const std::string& dir, const TokenizerOptions& options = {});
  // From parsed files; `name` labels error messages.
  static Tokenizer from_json(const nlohmann::json& tokenizer_json, TokenizerConfig config, const std::string& name);
  // From the text of a tiktoken.model file, a split pattern in PCRE2 syntax (tiktoken_pattern())
  // and the tokenizer_config.json whose added_tokens_decoder holds the special tokens. As
  // Kimi's tokenization_kimi.py, the 256 ids after the ranked tokens are special tokens, named
  // by added_tokens_decoder or else <|reserved_token_ID|>.
  static Tokenizer from_tiktoken(std::string_view model_text, const std::string& pattern, TokenizerConfig config,
                                 const std::string& name);

  // Encodes UTF-8 text (throws Error naming the byte offset of invalid UTF-8). Added tokens
  // written in the text are always recognised. With `add_special`, BOS is prepended when
  // add_bos_token is set and EOS appended when add_eos_token is set (transformers'
  // LlamaTokenizerFast; the Rust library alone adds neither for these files).
  std::vector<int32_t> encode(std::string_view text, bool add_special) const;

  // Decodes ids as Hugging Face does: unknown ids are dropped, invalid UTF-8 becomes U+FFFD.
  // `skip_special` drops added tokens marked special.
  std::string decode(std::span<const int32_t> ids, bool skip_special) const;

  // The bytes one id decodes to (possibly part of a UTF-8 character); empty for unknown ids
  // and, with `skip_special`, for special tokens.
  std::string_view token_bytes(int32_t id, bool skip_special) const;

  int32_t vocab_size() const { return static_cast<int32_t>(decode_bytes_.size()); }
  int32_t bos_id() const { return bos_id_; }  // -1 when the config names none
  int32_t eos_id() const { return eos_id_; }
  int32_t pad_id() const { return pad_id_; }
  bool is_special(int32_t id) const { return id >= 0 && id < vocab_size() && special_[id]; }
  int32_t token_to_id(std::string_view token_text) const;  // added token or vocabulary entry; -1 if none
  const TokenizerConfig& config() const { return config_; }


 private:
  Tokenizer() = default;
  void encode_text(std::string_view text, std::vector<int32_t>& out) const;
  void finish_special_ids(const std::string& name);  // bos/eos/pad ids from the config

  std::shared_ptr<const Bpe> bpe_;                // tokenizer.json
  std::shared_ptr<const TiktokenBpe> tiktoken_;   // tiktoken.model (then bpe_ is null)
  std::shared_ptr<const Regex> tiktoken_split_;
  std::shared_ptr<const AddedTokens> added_;
  std::shared_ptr<const PreTokenizer> pre_tokenizer_;
  TokenizerConfig config_;
  std::vector<std::string> decode_bytes_;  // by id: what the decoder makes of the token
  std::vector<bool> special_;
  bool byte_level_decoder_ = true;
  int32_t bos_id_ = -1, eos_id_ = -1, pad_id_ = -1;
};

}  // namespace dsv3
