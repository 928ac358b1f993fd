// generation_config.json (shipped beside config.json): the sampling defaults and end-of-sequence
// ids transformers' generate() uses. dsv3 chat and generate take their defaults from it, flags
// overriding (vLLM's --generation-config auto does the same for the server).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace dsv3 {

struct GenerationConfig {
  std::optional<bool> do_sample;  // false: greedy, whatever the temperature (transformers)
  std::optional<double> temperature, top_p, min_p;
  std::optional<int64_t> top_k, max_new_tokens;
  std::vector<int64_t> eos_token_ids;  // eos_token_id: an id or a list
  std::string source;                  // the file read; "" when there was none

  // Reads DIR/generation_config.json; an absent file gives an empty config. A field of the wrong
  // type or range is an error naming the file, field and value; other fields are not read.
  static GenerationConfig load(const std::string& dir);
  static GenerationConfig from_json(const nlohmann::json& j, const std::string& source);
};

}  // namespace dsv3
