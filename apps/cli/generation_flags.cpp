#include "apps/cli/generation_flags.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <random>

#include "apps/cli/common.h"
#include "apps/cli/progress.h"
#include "base/error.h"
#include "runtime/engine.h"

namespace dsv3::cli {

namespace fs = std::filesystem;

void add_generation_flags(CLI::App* sub, GenerationFlags& f) {
  sub->add_option("--model", f.model,
                  "Checkpoint directory (Hugging Face layout, with tokenizer.json or tiktoken.model, and tokenizer_config.json). "
                  "Default: $DSV3_MODEL, else models/default (installed by scripts/setup.sh: a small model trained on the King James Bible)");
  sub->add_option("--threads", f.threads, "Worker threads (default: all cores)")->check(CLI::Range(0, 1024));
  sub->add_flag("--quiet", f.quiet, "No loading progress, banner or statistics on stderr");
  sub->add_flag("--fp8-head", f.fp8_head, kFp8HeadHelp);
  sub->add_option("--ctx-size", f.ctx_size, kCtxSizeHelp)->check(CLI::Range(int64_t(0), int64_t(1) << 40));
  auto* g = sub->add_option_group("Sampling",
                                  "Defaults: the model's generation_config.json (temperature, top_p, top_k, min_p, "
                                  "max_new_tokens; do_sample false means greedy), else the values shown; a flag wins");
  f.temperature_opt = g->add_option("--temperature", f.sampling.temperature, "Softmax temperature; 0 = greedy (argmax)")
                          ->check(CLI::Range(0.0, 100.0))
                          ->capture_default_str();
  f.top_p_opt =
      g->add_option("--top-p", f.sampling.top_p, "Nucleus sampling: smallest set of tokens with this much probability (1 = off)")
          ->check(CLI::Range(0.0, 1.0))
          ->capture_default_str();
  f.top_k_opt = g->add_option("--top-k", f.sampling.top_k, "Keep the k most likely tokens (0 = off)")
                    ->check(CLI::Range(0, 1 << 30))
                    ->capture_default_str();
  f.min_p_opt =
      g->add_option("--min-p", f.sampling.min_p, "Drop tokens less likely than min-p times the most likely one (0 = off)")
          ->check(CLI::Range(0.0, 1.0))
          ->capture_default_str();
  g->add_option("--seed", f.seed, "Random seed: the same seed gives the same output (default: a random seed)")
      ->check(CLI::Range(int64_t(0), std::numeric_limits<int64_t>::max()));
  f.max_new_tokens_opt = g->add_option("--max-new-tokens", f.max_new_tokens,
                                       "Most tokens to generate per reply (the context may end a reply sooner)")
                             ->check(CLI::Range(int64_t(1), int64_t(1) << 30))
                             ->capture_default_str();
  g->add_option("--stop", f.stop, "Stop when the reply contains this text (repeatable); the text is not shown");
  g->add_flag("--ignore-eos", f.ignore_eos,
              "Do not stop at the end-of-sequence tokens (the tokenizer's, config.json's and generation_config.json's)");
  auto* k = sub->add_option_group("KV cache");
  k->add_option("--kv-cache-dtype", f.kv_cache_dtype, kKvCacheDtypeHelp)
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->capture_default_str();
  k->add_option("--kv-cache-mb", f.kv_cache_mb,
                "Fixed size of the KV cache pool in MiB (0: it grows with the conversations; a run that needs more "
                "than a fixed pool holds stops with an error naming its size)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 30))
      ->capture_default_str();
  add_speculative_flags(sub, f.speculative);
}

void apply_cache_flags(const GenerationFlags& f, const Model& model, EngineOptions& opts) {
  opts.speculative = resolve_speculative(f.speculative, model);
  opts.cache_dtype = cache_dtype_from_flag(f.kv_cache_dtype);
  opts.block_size = 64;
  opts.kv_cache_blocks = 0;
  if (f.kv_cache_mb > 0) {
    const int64_t block_bytes = model.cache_layout(opts.block_size, opts.cache_dtype).block_bytes();
    opts.kv_cache_blocks = (f.kv_cache_mb << 20) / block_bytes;
    if (opts.kv_cache_blocks < 1)
      fail("--kv-cache-mb {}: less than one cache block ({} of {} positions)", f.kv_cache_mb,
           format_bytes(uint64_t(block_bytes)), opts.block_size);
  }
}

void apply_generation_config(GenerationFlags& f, const GenerationConfig& g) {
  if (g.source.empty()) return;
  auto unset = [](const CLI::Option* o) { return o == nullptr || o->count() == 0; };
  bool used = false;
  auto take = [&](const CLI::Option* o, const auto& value, auto& out) {
    if (value && unset(o)) {
      out = static_cast<std::remove_reference_t<decltype(out)>>(*value);
      used = true;
    }
  };
  take(f.temperature_opt, g.temperature, f.sampling.temperature);
  take(f.top_p_opt, g.top_p, f.sampling.top_p);
  take(f.top_k_opt, g.top_k, f.sampling.top_k);
  take(f.min_p_opt, g.min_p, f.sampling.min_p);
  take(f.max_new_tokens_opt, g.max_new_tokens, f.max_new_tokens);
  // transformers samples only with do_sample true; false is greedy whatever the temperature.
  if (g.do_sample == false && unset(f.temperature_opt)) {
    f.sampling.temperature = 0;
    used = true;
  }
  if (used) f.defaults_from = g.source;
}

int64_t resolve_ctx_size(int64_t flag, const ModelConfig& config) {
  if (flag > config.max_position_embeddings)
    fail("--ctx-size {} is larger than the model's context (max_position_embeddings {})", flag,
         config.max_position_embeddings);
  return flag > 0 ? flag : config.max_position_embeddings;
}

SamplingParams resolve_sampling(const GenerationFlags& f) {
  SamplingParams p = f.sampling;
  p.seed = f.seed >= 0 ? uint64_t(f.seed) : (uint64_t(std::random_device{}()) << 31) ^ std::random_device{}();
  p.validate();
  return p;
}

namespace {
fs::path exe_dir() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path() : exe.parent_path();
}
}  // namespace

namespace {
// Fails early, before a long load, on a directory that cannot be a chat model.
std::string checked(const std::string& dir, const std::string& source) {
  if (!fs::is_directory(dir)) fail("{}: model directory '{}' does not exist or is not a directory", source, dir);
  if (!fs::exists(fs::path(dir) / "config.json"))
    fail("{}: '{}' has no config.json; chat and generate need a Hugging Face checkpoint directory with config.json, "
         "the weights and the tokenizer files (tokenizer.json or tiktoken.model, tokenizer_config.json)",
         source, dir);
  return dir;
}
}  // namespace

std::string resolve_model_dir(const std::string& flag) {
  if (!flag.empty()) return checked(flag, "--model");
  if (const char* env = std::getenv("DSV3_MODEL"); env && *env) return checked(env, "$DSV3_MODEL");
  std::vector<fs::path> tried;
  if (const fs::path dir = exe_dir(); !dir.empty()) tried.push_back(dir.parent_path() / "models" / "default");
  tried.push_back(fs::path("models") / "default");
  for (const auto& p : tried)
    if (fs::exists(p / "config.json")) return checked(p.lexically_normal().string(), "default model");
  fail("no --model given and there is no default model ({}); run scripts/setup.sh to make one, or pass "
       "--model /path/to/DeepSeek-V3",
       tried.front().lexically_normal().string());
}

bool has_random_weights(const std::string& dir) { return fs::exists(fs::path(dir) / kRandomWeightsMarker); }

std::vector<int32_t> end_ids(const Tokenizer& tok, const ModelConfig& config, bool ignore_eos,
                             const GenerationConfig& generation) {
  std::vector<int32_t> ids;
  if (ignore_eos) return ids;
  if (tok.eos_id() >= 0) ids.push_back(tok.eos_id());
  for (const auto* list : {&config.eos_token_ids, &generation.eos_token_ids})
    for (int64_t id : *list)
      if (std::find(ids.begin(), ids.end(), int32_t(id)) == ids.end()) ids.push_back(int32_t(id));
  return ids;
}

}  // namespace dsv3::cli
