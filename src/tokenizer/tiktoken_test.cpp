// tiktoken.model tokenizers (Kimi-K2, Moonlight). The whole-vocabulary conformance against the
// tiktoken library itself is tests/oracle/check_tokenizer.sh tiktoken (o200k_base's ranks);
// these are the rules on a vocabulary small enough to reason about, and the load errors.
#include "tokenizer/tiktoken.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include <unistd.h>

#include "base/error.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace dsv3 {
namespace {

std::string b64(std::string_view bytes) {
  static const char* k = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t n = uint8_t(bytes[i]) << 16 | uint8_t(bytes[i + 1]) << 8 | uint8_t(bytes[i + 2]);
    for (int s : {18, 12, 6, 0}) out += k[(n >> s) & 63];
  }
  if (i + 1 == bytes.size()) {
    const uint32_t n = uint8_t(bytes[i]) << 16;
    out += k[n >> 18], out += k[(n >> 12) & 63], out += "==";
  } else if (i + 2 == bytes.size()) {
    const uint32_t n = uint8_t(bytes[i]) << 16 | uint8_t(bytes[i + 1]) << 8;
    out += k[n >> 18], out += k[(n >> 12) & 63], out += k[(n >> 6) & 63], out += '=';
  }
  return out;
}

// The 256 single bytes (rank = byte), then merged tokens in rank order.
std::string model_text(const std::vector<std::string>& merged) {
  std::string text;
  for (int b = 0; b < 256; ++b) text += b64(std::string(1, char(b))) + " " + std::to_string(b) + "\n";
  for (size_t i = 0; i < merged.size(); ++i) text += b64(merged[i]) + " " + std::to_string(256 + i) + "\n";
  return text;
}

TEST(Tiktoken, LowestRankFirstLeftmostOnTies) {
  // ranks: "ab" 256, "bc" 257, "abc" 258, "aa" 259
  const TiktokenBpe bpe(model_text({"ab", "bc", "abc", "aa"}), "t");
  auto enc = [&](std::string_view s) {
    std::vector<int32_t> out;
    bpe.encode_piece(s, out);
    return out;
  };
  EXPECT_EQ(enc("abc"), (std::vector<int32_t>{258}));          // a whole token
  EXPECT_EQ(enc("abcx"), (std::vector<int32_t>{258, 'x'}));    // ab (256) before bc (257), then abc
  EXPECT_EQ(enc("xbc"), (std::vector<int32_t>{'x', 257}));
  EXPECT_EQ(enc("aaa"), (std::vector<int32_t>{259, 'a'}));     // two equal pairs: the leftmost merges
  EXPECT_EQ(enc("aaaaa"), (std::vector<int32_t>{259, 259, 'a'}));
  // A long piece (the heap path tiktoken would take quadratic time on) ends as pairs.
  std::vector<int32_t> want(5000, 259);
  EXPECT_EQ(enc(std::string(10000, 'a')), want);
}

// The heap merge against the plain statement of tiktoken's rule (scan all pairs, merge the
// lowest rank, the first on ties; repeat), on random vocabularies and texts over a small
// alphabet where ties and overlapping candidates are common.
TEST(Tiktoken, HeapMergeEqualsTheLinearScanRule) {
  uint64_t state = 12345;
  auto rnd = [&](uint64_t n) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (state >> 33) % n;
  };
  for (int round = 0; round < 40; ++round) {
    std::vector<std::string> merged;
    std::set<std::string> seen;
    while (merged.size() < 60) {
      std::string t;
      for (size_t k = 0, n = 2 + rnd(4); k < n; ++k) t += char('a' + rnd(3));
      if (seen.insert(t).second) merged.push_back(t);
    }
    const TiktokenBpe bpe(model_text(merged), "t");
    for (int c = 0; c < 50; ++c) {
      std::string text;
      for (size_t k = 0, n = 1 + rnd(40); k < n; ++k) text += char('a' + rnd(3));
      std::vector<std::string> parts;
      for (char ch : text) parts.emplace_back(1, ch);
      while (parts.size() > 1) {
        int32_t best = -1;
        size_t at = 0;
        for (size_t i = 0; i + 1 < parts.size(); ++i) {
          const int32_t r = bpe.rank_of(parts[i] + parts[i + 1]);
          if (r >= 0 && (best < 0 || r < best)) best = r, at = i;
        }
        if (best < 0) break;
        parts[at] += parts[at + 1];
        parts.erase(parts.begin() + ptrdiff_t(at) + 1);
      }
      std::vector<int32_t> want;
      if (bpe.rank_of(text) >= 0) {
        want.push_back(bpe.rank_of(text));
      } else {
        for (const auto& p : parts) want.push_back(bpe.rank_of(p));
      }
      std::vector<int32_t> got;
      bpe.encode_piece(text, got);
      ASSERT_EQ(got, want) << text;
    }
  }
}

TEST(Tiktoken, FileErrorsNameLineAndValue) {
  auto error_of = [](const std::string& text) {
    try {
      TiktokenBpe(text, "x/tiktoken.model");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string good = model_text({});
  EXPECT_NE(error_of(good + "QUJD\n").find("x/tiktoken.model line 257: expected \"BASE64 RANK\""), std::string::npos);
  EXPECT_NE(error_of(good + "QU*D 300\n").find("line 257: 'QU*D' is not base64"), std::string::npos);
  EXPECT_NE(error_of(good + "QUJD -4\n").find("line 257: rank '-4' is not a non-negative integer"), std::string::npos);
  EXPECT_NE(error_of(good + "QUJD 7\n").find("rank 7 is given to two tokens"), std::string::npos);
  EXPECT_NE(error_of(good + "QQ== 300\n").find("the bytes of rank 300 are also rank 65"), std::string::npos);
  EXPECT_NE(error_of("QQ== 0\n").find("byte 0x00 has no token"), std::string::npos);
  EXPECT_NE(error_of("").find("no tokens"), std::string::npos);
}

TEST(Tiktoken, PatternsByNameOrRegex) {
  EXPECT_TRUE(tiktoken_pattern("kimi"));
  EXPECT_TRUE(tiktoken_pattern("o200k_base"));
  EXPECT_FALSE(tiktoken_pattern("gpt2"));
  EXPECT_EQ(resolve_tiktoken_pattern("\\p{L}+| ?\\d+"), "\\p{L}+| ?\\d+");
  try {
    resolve_tiktoken_pattern("[\\p{L}&&[^\\p{Han}]]+");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("class intersections (&&)"), std::string::npos) << e.what();
  }
}

struct TempDir {
  TempDir() : path(std::filesystem::path(::testing::TempDir()) / ("tiktoken_" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  void write(const std::string& name, const std::string& text) const {
    std::ofstream(path / name, std::ios::binary) << text;
  }
  std::filesystem::path path;
};

// A Kimi-style directory: tiktoken.model + tokenizer_config.json with added_tokens_decoder.
TEST(Tiktoken, KimiStyleDirectory) {
  TempDir d;
  d.write("tiktoken.model", model_text({"he", "ll", "hell", " w"}));
  d.write("tokenizer_config.json", R"({
    "added_tokens_decoder": {
      "260": {"content": "[BOS]", "special": true},
      "261": {"content": "[EOS]", "special": true},
      "262": {"content": "<|im_end|>", "special": true},
      "264": {"content": "<|im_middle|>", "special": false}},
    "bos_token": "[BOS]", "eos_token": "[EOS]", "tokenizer_class": "TikTokenTokenizer",
    "chat_template": "inline"})");
  const Tokenizer t = Tokenizer::load(d.path.string());
  EXPECT_EQ(t.vocab_size(), 260 + 256);  // Kimi-K2: 163584 + 256 = vocab_size 163840
  EXPECT_EQ(t.bos_id(), 260);
  EXPECT_EQ(t.eos_id(), 261);
  EXPECT_FALSE(t.config().add_bos_token);  // TikTokenTokenizer adds no BOS
  EXPECT_EQ(t.encode("hello world", true), (std::vector<int32_t>{258, 'o', 259, 'o', 'r', 'l', 'd'}));
  EXPECT_EQ(t.encode("[BOS]hi<|im_end|> <|reserved_token_263|>", true),
            (std::vector<int32_t>{260, 'h', 'i', 262, ' ', 263}));
  const std::vector<int32_t> ids{260, 258, 'o', 264, 263, 261};
  EXPECT_EQ(t.decode(ids, false), "[BOS]hello<|im_middle|><|reserved_token_263|>[EOS]");
  EXPECT_EQ(t.decode(ids, true), "hello<|im_middle|>");
  EXPECT_EQ(t.token_to_id("<|im_end|>"), 262);
  EXPECT_EQ(t.token_to_id("\xC4\xA0w"), 259);  // GPT-2's byte-level spelling of " w", as Kimi's get_vocab
  EXPECT_EQ(t.config().chat_template(), "inline");
  // chat_template.jinja beside the files wins over the inline template, as in transformers.
  d.write("chat_template.jinja", "from file");
  EXPECT_EQ(Tokenizer::load(d.path.string()).config().chat_template(), "from file");
  // Its errors name it, not tokenizer_config.json.
  d.write("chat_template.jinja", "{% for m in messages %}x");
  try {
    ChatTemplate::from_config(Tokenizer::load(d.path.string()).config());
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("chat_template.jinja: ", 0), 0u) << e.what();
  }
  d.write("chat_template.jinja", "from file");
  // Another pattern by name.
  const Tokenizer o = Tokenizer::load(d.path.string(), {.tiktoken_pattern = "cl100k_base"});
  EXPECT_EQ(o.encode("hello world", false), t.encode("hello world", false));
}

TEST(Tiktoken, DirectoryWithoutATokenizerListsItsFiles) {
  TempDir d;
  d.write("tokenizer_config.json", "{}");
  d.write("vocab.txt", "a\n");
  d.write("model.safetensors", "");
  try {
    Tokenizer::load(d.path.string());
    FAIL();
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("has no usable tokenizer: dsv3 reads tokenizer.json (Hugging Face tokenizers) or tiktoken.model"),
              std::string::npos) << m;
    EXPECT_NE(m.find("found tokenizer_config.json, vocab.txt"), std::string::npos) << m;
  }
  d.write("tiktoken.model", "QQ== 0\n");
  try {
    Tokenizer::load(d.path.string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tiktoken.model: byte 0x00 has no token"), std::string::npos) << e.what();
  }
}

// Kimi's cut of long texts (tokenization_kimi.py's encode): runs of white space or of other
// characters at most 25,000 code points, chunks of 400,000. Expected pieces from its Python
// function (tests/oracle/kimi_presplit.py); tokens against tiktoken: check_tokenizer.sh tiktoken.
TEST(Tiktoken, KimiCutsLongRunsAndChunks) {
  auto cut = [](const std::string& text) {
    std::vector<size_t> sizes;
    kimi_presplit(text, [&](std::string_view p) { sizes.push_back(p.size()); });
    return sizes;
  };
  EXPECT_EQ(cut(""), std::vector<size_t>{});
  EXPECT_EQ(cut("ab c"), std::vector<size_t>{4});
  EXPECT_EQ(cut(std::string(25001, 'a')), (std::vector<size_t>{25000, 1}));
  std::string spaces = "x";
  spaces.append(25001, ' ');
  spaces += 'y';
  EXPECT_EQ(cut(spaces), (std::vector<size_t>{25001, 2}));
  // U+3000 (3 bytes) is white space to Python's isspace: 25,001 of them cut after 25,000.
  std::string ideographic;
  for (int i = 0; i < 25001; ++i) ideographic += "\xE3\x80\x80";
  EXPECT_EQ(cut(ideographic), (std::vector<size_t>{75000, 3}));
  // "ab " 140,000 times: 420,000 code points in chunks of 400,000, no run too long.
  std::string words;
  for (int i = 0; i < 140000; ++i) words += "ab ";
  EXPECT_EQ(cut(words), (std::vector<size_t>{400000, 20000}));
}

}  // namespace
}  // namespace dsv3
