// What `dsv3 chat` and `dsv3 generate` share: the model to load (with the default model when
// --model is absent), sampling and stopping flags, and the end-of-sequence ids.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "apps/cli/speculative_flags.h"
#include "io/generation_config.h"
#include "io/model_config.h"
#include "runtime/engine.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"

namespace dsv3::cli {

struct GenerationFlags {
  std::string model;  // empty: the default model
  int threads = 0;
  bool quiet = false;
  bool fp8_head = false;  // quantise a 16/32-bit lm_head to FP8 blocks at load
  SamplingParams sampling;
  int64_t seed = -1;  // -1: a random seed, printed by /stats and --jsonl
  int64_t max_new_tokens = 256;
  std::vector<std::string> stop;
  bool ignore_eos = false;
  std::string kv_cache_dtype = "f32";
  int64_t kv_cache_mb = 0;  // 0: the pool grows as the conversation does
  int64_t ctx_size = 0;  // --ctx-size; 0: the model's max_position_embeddings
  SpeculativeFlags speculative;
  // The sampling options, to tell a flag the user gave from a default (generation_config.json
  // fills the defaults).
  CLI::Option *temperature_opt = nullptr, *top_p_opt = nullptr, *top_k_opt = nullptr, *min_p_opt = nullptr,
              *max_new_tokens_opt = nullptr;
  std::string defaults_from;  // set by apply_generation_config: the file the defaults came from, or ""
};

// --model, --threads, --quiet, --fp8-head, --temperature, --top-p, --top-k, --min-p, --seed,
// --max-new-tokens, --stop, --ignore-eos, --kv-cache-dtype, --kv-cache-mb, with their defaults in --help.
void add_generation_flags(CLI::App* sub, GenerationFlags& f);

// Takes temperature, top_p, top_k, min_p and max_new_tokens from the model's
// generation_config.json where the user gave no flag (do_sample false: greedy).
void apply_generation_config(GenerationFlags& f, const GenerationConfig& g);

// --ctx-size checked against the model (at most max_position_embeddings), or the model's.
int64_t resolve_ctx_size(int64_t flag, const ModelConfig& config);
inline constexpr const char* kCtxSizeHelp =
    "Context length: most positions per sequence, prompt + generated tokens (default: the model's "
    "max_position_embeddings, also the most allowed)";

// Validated sampling parameters with the seed resolved (random when --seed is not given).
SamplingParams resolve_sampling(const GenerationFlags& f);

// The engine's KV cache pool from --kv-cache-dtype and --kv-cache-mb (blocks of 64 positions),
// and speculative decoding from --speculative / --draft-tokens (throws Error naming the flag).
void apply_cache_flags(const GenerationFlags& f, const Model& model, EngineOptions& opts);

// --model, or the default model: $DSV3_MODEL, else models/default beside the build directory
// holding this binary (scripts/setup.sh makes it), else ./models/default. Throws Error saying
// how to get one when none exists.
std::string resolve_model_dir(const std::string& flag);

// True for checkpoints made by `dsv3 init` (they carry RANDOM_WEIGHTS).
bool has_random_weights(const std::string& dir);
// The file `dsv3 init` writes into every checkpoint it makes.
inline constexpr const char* kRandomWeightsMarker = "RANDOM_WEIGHTS";

// Token ids that end a reply: the tokenizer's EOS, config.json's eos_token_id and
// generation_config.json's (unless --ignore-eos).
std::vector<int32_t> end_ids(const Tokenizer& tok, const ModelConfig& config, bool ignore_eos,
                             const GenerationConfig& generation = {});

}  // namespace dsv3::cli
