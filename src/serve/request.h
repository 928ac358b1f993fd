// OpenAI request bodies -> typed requests, validated. Field names and defaults follow OpenAI's
// API reference and vLLM's protocol classes (SERVER.md §1.2, §1.6, §1.9): known fields of a
// wrong type or out of range are a 400 naming the field; unknown fields are accepted and
// reported to the caller (who logs them); `response_format` other than text is refused.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "runtime/sampler.h"
#include "runtime/scheduler.h"

namespace dsv3::serve {

using Json = nlohmann::ordered_json;

// Server-side sampling defaults: the model's generation_config.json, else OpenAI's (temperature
// 1, top_p 1); a request's own values win (vLLM `--generation-config auto`).
struct SamplingDefaults {
  float temperature = 1.0f;
  float top_p = 1.0f;
  int32_t top_k = 0;
  float min_p = 0.0f;
  // Reads dir/generation_config.json when present (temperature, top_p, top_k, min_p).
  static SamplingDefaults from_model_dir(const std::string& dir);
};

// What chat and completions requests share.
struct GenerationOptions {
  std::string model;         // "" when absent
  int64_t max_tokens = -1;   // -1: not given (chat: the context left; completions: 16)
  int n = 1;
  SamplingParams sampling;
  bool seed_given = false;
  PenaltyParams penalties;
  std::vector<std::pair<int32_t, float>> logit_bias;  // token id -> bias in [-100, 100]
  std::vector<std::string> stop;
  bool include_stop_str_in_output = false;
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  std::string cache_salt;  // vLLM's: prefix-cache blocks are shared only among requests with the same salt
  int64_t min_tokens = 0;
  bool logprobs = false;
  int top_logprobs = 0;
  bool stream = false;
  bool include_usage = false;
  bool skip_special_tokens = true;
};

enum class ToolChoice { Auto, None, Required, Named };

struct ChatRequest {
  GenerationOptions gen;
  Json messages;  // normalised: content as a string (text parts joined); tool-call arguments as given (string or object)
  Json tools;     // array, or null when absent
  ToolChoice tool_choice = ToolChoice::Auto;
  std::string tool_choice_name;          // ToolChoice::Named
  Json chat_template_kwargs = Json::object();
  bool add_generation_prompt = true;
  bool continue_final_message = false;
};

struct CompletionPrompt {
  std::optional<std::string> text;  // a string prompt
  std::vector<int32_t> ids;         // or token ids
};

struct CompletionRequest {
  GenerationOptions gen;
  std::vector<CompletionPrompt> prompts;
  bool echo = false;
  std::string suffix;  // accepted; must be empty (no fill-in-the-middle template)
};

// Parse and validate a body. Throws ApiError(400) naming the field. `unknown` receives the
// names of fields this server does not know (accepted and ignored).
ChatRequest parse_chat_request(const Json& body, const SamplingDefaults& defaults, std::vector<std::string>* unknown);
CompletionRequest parse_completion_request(const Json& body, const SamplingDefaults& defaults,
                                           std::vector<std::string>* unknown);

// Parses a request body as JSON; ApiError(400) with the parser's position on failure.
Json parse_body(const std::string& body);

}  // namespace dsv3::serve
