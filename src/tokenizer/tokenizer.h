// Text <-> token ids, identical to Hugging Face `tokenizers` for byte-level BPE files
// (DeepSeek-V2/V3/R1 family), plus transformers' BOS/EOS rule from tokenizer_config.json.
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

class Tokenizer {
 public:
  // Reads DIR/tokenizer.json and DIR/tokenizer_config.json (the latter may be absent).
  static Tokenizer load(const std::string& dir);
  // From parsed files; `name` labels error messages.
  static Tokenizer from_json(const nlohmann::json& tokenizer_json, TokenizerConfig config, const std::string& name);

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

  std::shared_ptr<const Bpe> bpe_;
  std::shared_ptr<const AddedTokens> added_;
  std::shared_ptr<const PreTokenizer> pre_tokenizer_;
  TokenizerConfig config_;
  std::vector<std::string> decode_bytes_;  // by id: what the decoder makes of the token
  std::vector<bool> special_;
  bool byte_level_decoder_ = true;
  int32_t bos_id_ = -1, eos_id_ = -1, pad_id_ = -1;
};

}  // namespace dsv3
