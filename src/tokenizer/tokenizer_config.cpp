#include "tokenizer/tokenizer_config.h"

#include <algorithm>
#include <climits>
#include <fstream>
#include <sstream>

#include "base/error.h"
#include "io/json_file.h"

namespace dsv3 {
namespace {

// A special token is written either as a string or as a serialized AddedToken object.
std::optional<std::string> token_text(const nlohmann::json& j, const char* key, const std::string& file) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  const auto& v = j[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  fail("{}: '{}' must be a string or an object with a string 'content', got {}", file, key, v.dump());
}

bool get_bool(const nlohmann::json& j, const char* key, bool fallback, const std::string& file) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_boolean()) fail("{}: '{}' must be true or false, got {}", file, key, j[key].dump());
  return j[key].get<bool>();
}

}  // namespace

TokenizerConfig TokenizerConfig::from_json(const nlohmann::json& j, const std::string& file) {
  if (!j.is_object()) fail("{}: expected a JSON object", file);
  TokenizerConfig c;
  c.bos_token = token_text(j, "bos_token", file);
  c.eos_token = token_text(j, "eos_token", file);
  c.pad_token = token_text(j, "pad_token", file);
  c.unk_token = token_text(j, "unk_token", file);
  if (j.contains("tokenizer_class") && !j["tokenizer_class"].is_null()) {
    if (!j["tokenizer_class"].is_string())
      fail("{}: 'tokenizer_class' must be a string, got {}", file, j["tokenizer_class"].dump());
    c.tokenizer_class = j["tokenizer_class"].get<std::string>();
  }
  // transformers' LlamaTokenizer and LlamaTokenizerFast take add_bos_token=True by default.
  const bool llama = c.tokenizer_class == "LlamaTokenizerFast" || c.tokenizer_class == "LlamaTokenizer";
  c.add_bos_token = get_bool(j, "add_bos_token", llama, file);
  c.add_eos_token = get_bool(j, "add_eos_token", false, file);
  if (j.contains("model_max_length") && !j["model_max_length"].is_null()) {
    const auto& v = j["model_max_length"];
    if (!v.is_number()) fail("{}: 'model_max_length' must be a number, got {}", file, v.dump());
    // transformers writes a huge number (int(1e30)) for "no limit": beyond int64 it reads as the
    // largest; a negative one means nothing (and -1e30 does not fit an integer at all).
    const double d = v.get<double>();
    if (!(d >= 0)) fail("{}: 'model_max_length' must not be negative, got {}", file, v.dump());
    if (v.is_number_unsigned())
      c.model_max_length = int64_t(std::min<uint64_t>(v.get<uint64_t>(), uint64_t(INT64_MAX)));
    else
      c.model_max_length = d >= 9.2e18 ? INT64_MAX : v.is_number_integer() ? v.get<int64_t>() : static_cast<int64_t>(d);
  }
  if (j.contains("added_tokens_decoder") && !j["added_tokens_decoder"].is_null()) {
    const auto& d = j["added_tokens_decoder"];
    if (!d.is_object()) fail("{}: 'added_tokens_decoder' must be an object of id -> token, got {}", file, d.dump());
    for (const auto& [key, t] : d.items()) {
      const std::string where = fmt::format("{}: added_tokens_decoder['{}']", file, key);
      size_t used = 0;
      long long id = -1;
      try {
        id = std::stoll(key, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used == 0 || used != key.size() || id < 0 || id > INT32_MAX) fail("{}: the key must be a token id", where);
      if (!t.is_object() || !t.contains("content") || !t["content"].is_string())
        fail("{}: expected an object with a string 'content', got {}", where, t.dump());
      AddedToken a;
      a.id = int32_t(id);
      a.content = t["content"].get<std::string>();
      a.special = get_bool(t, "special", false, where);
      a.lstrip = get_bool(t, "lstrip", false, where);
      a.rstrip = get_bool(t, "rstrip", false, where);
      a.single_word = get_bool(t, "single_word", false, where);
      a.normalized = get_bool(t, "normalized", !a.special, where);
      c.added_tokens_decoder.push_back(std::move(a));
    }
    std::sort(c.added_tokens_decoder.begin(), c.added_tokens_decoder.end(),
              [](const AddedToken& a, const AddedToken& b) { return a.id < b.id; });
  }
  if (j.contains("chat_template") && !j["chat_template"].is_null()) {
    const auto& t = j["chat_template"];
    if (t.is_string()) {
      c.chat_templates["default"] = t.get<std::string>();
    } else if (t.is_array()) {
      for (size_t i = 0; i < t.size(); ++i) {
        const auto& e = t[i];
        if (!e.is_object() || !e.contains("name") || !e["name"].is_string() || !e.contains("template") ||
            !e["template"].is_string()) {
          fail("{}: chat_template[{}] must be an object with string 'name' and 'template'", file, i);
        }
        c.chat_templates[e["name"].get<std::string>()] = e["template"].get<std::string>();
      }
    } else {
      fail("{}: 'chat_template' must be a string or a list of {{name, template}} objects", file);
    }
  }
  return c;
}

TokenizerConfig TokenizerConfig::load(const std::string& path) {
  return from_json(read_json_file(path), path);
}

const std::string& TokenizerConfig::chat_template(const std::string& name) const {
  std::string key = name.empty() ? "default" : name;
  auto it = chat_templates.find(key);
  if (it == chat_templates.end()) {
    std::string names;
    for (const auto& [n, t] : chat_templates) names += (names.empty() ? "" : ", ") + n;
    fail("no chat template named '{}' (have: {}); a model directory carries it in chat_template.jinja or "
         "tokenizer_config.json's 'chat_template' (chat and generate also take --chat-template FILE)",
         key, names.empty() ? "none" : names);
  }
  return it->second;
}

}  // namespace dsv3
