#include "io/generation_config.h"

#include <climits>
#include <cmath>
#include <filesystem>

#include "base/error.h"
#include "io/json_file.h"

namespace dsv3 {

namespace {

const nlohmann::json* field(const nlohmann::json& j, const char* name) {
  const auto it = j.find(name);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

std::optional<double> number(const nlohmann::json& j, const std::string& source, const char* name, double lo,
                             double hi) {
  const auto* v = field(j, name);
  if (!v) return std::nullopt;
  if (!v->is_number()) fail("{}: '{}' must be a number, got {}", source, name, v->dump());
  const double d = v->get<double>();
  if (!(d >= lo && d <= hi)) fail("{}: '{}' is {}; expected a value in [{}, {}]", source, name, d, lo, hi);
  return d;
}

int64_t integer(const nlohmann::json& v, const std::string& source, const char* name) {
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>()) return int64_t(v.get<double>());
  fail("{}: '{}' must be an integer, got {}", source, name, v.dump());
}

}  // namespace

GenerationConfig GenerationConfig::from_json(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object()) fail("{}: expected a JSON object", source);
  GenerationConfig g;
  g.source = source;
  if (const auto* v = field(j, "do_sample")) {
    if (!v->is_boolean()) fail("{}: 'do_sample' must be true or false, got {}", source, v->dump());
    g.do_sample = v->get<bool>();
  }
  g.temperature = number(j, source, "temperature", 0.0, 100.0);
  g.top_p = number(j, source, "top_p", 0.0, 1.0);
  g.min_p = number(j, source, "min_p", 0.0, 1.0);
  if (const auto* v = field(j, "top_k")) {
    g.top_k = integer(*v, source, "top_k");
    if (*g.top_k < 0) fail("{}: 'top_k' is {}; expected >= 0", source, *g.top_k);
  }
  if (const auto* v = field(j, "max_new_tokens")) {
    g.max_new_tokens = integer(*v, source, "max_new_tokens");
    if (*g.max_new_tokens < 1) fail("{}: 'max_new_tokens' is {}; expected >= 1", source, *g.max_new_tokens);
  }
  if (const auto* v = field(j, "eos_token_id")) {
    if (v->is_array()) {
      for (const auto& e : *v) g.eos_token_ids.push_back(integer(e, source, "eos_token_id"));
    } else {
      g.eos_token_ids.push_back(integer(*v, source, "eos_token_id"));
    }
    for (int64_t id : g.eos_token_ids)
      if (id < 0 || id > INT32_MAX) fail("{}: 'eos_token_id' {} is not a token id", source, id);
  }
  return g;
}

GenerationConfig GenerationConfig::load(const std::string& dir) {
  const auto path = std::filesystem::path(dir) / "generation_config.json";
  if (!std::filesystem::exists(path)) return {};
  return from_json(read_json_file(path.string()), path.string());
}

}  // namespace dsv3
