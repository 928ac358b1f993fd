// Batched generation: several sequences, each with its own prompt, sampling parameters and
// limits, advanced together with one Model::forward call per step. The first steps prefill the
// prompts (chunked to at most max_step_tokens entries per step), and every step also carries
// one decode entry for each sequence that is already generating; a sequence leaves the batch on
// its own EOS, its token limit, or when the token callback says stop (a stop string). Tokens are
// reported as they are sampled (streaming).
//
//   Engine engine(model);
//   GenerationRequest req{.prompt = ids, .sampling = {.temperature = 0}, .max_new_tokens = 64,
//                         .stop_ids = {tok.eos_id()}};
//   auto results = engine.generate({&req, 1}, [](size_t i, int32_t t) { ...; return true; });
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "model/model.h"
#include "runtime/sampler.h"

namespace dsv3 {

// A conversation's cache kept between requests (chat): the tokens already in the cache. A new
// prompt that starts with them prefills only the rest.
struct Session {
  explicit Session(const Model& model) : cache(model.new_cache()) {}
  // On a shared pool (Engine::pool(): chat keeps its conversation in the engine's pool).
  explicit Session(std::shared_ptr<BlockPool> pool) : cache(std::move(pool)) {}
  SequenceCache cache;
  std::vector<int32_t> tokens;  // tokens whose latents are in the cache, position order
};

struct GenerationRequest {
  std::vector<int32_t> prompt;  // non-empty
  SamplingParams sampling;
  int64_t max_new_tokens = 256;
  std::vector<int32_t> stop_ids;  // end-of-sequence tokens: finish without reporting them
  Session* session = nullptr;     // optional: reuse and extend this cache
};

enum class FinishReason { Eos, Length, Stop, Cancelled };
const char* finish_reason_name(FinishReason r);  // "eos", "length", "stop", "cancelled"

struct GenerationResult {
  std::vector<int32_t> tokens;  // generated, stop id excluded
  FinishReason finish = FinishReason::Length;
  int64_t prompt_tokens = 0;  // prefilled (after reuse of a session's cache)
  int64_t reused_tokens = 0;  // taken from the session's cache
};

struct GenerationStats {
  int64_t prefill_tokens = 0, decode_tokens = 0, steps = 0;
  double prefill_s = 0, decode_s = 0;  // wall time of steps that held prompt entries / only decode entries
  double prefill_tps() const { return prefill_s > 0 ? double(prefill_tokens) / prefill_s : 0; }
  double decode_tps() const { return decode_s > 0 ? double(decode_tokens) / decode_s : 0; }
};

struct EngineOptions {
  int64_t max_step_tokens = 2048;  // entries per forward step (prompt chunks + decodes)
  bool absorbed = true;
  // The KV cache pool: kv_cache_blocks blocks of block_size positions (0: grows on demand).
  // A fixed pool that runs out fails the step with an Error naming its size.
  CacheDtype cache_dtype = CacheDtype::F32;
  int64_t block_size = 64;
  int64_t kv_cache_blocks = 0;
};

// Called with (request index, token) for every generated token (never a stop id); return false
// to finish that request with FinishReason::Stop (the token stays in its result).
using TokenCallback = std::function<bool(size_t, int32_t)>;

class Engine {
 public:
  explicit Engine(Model& model, EngineOptions opts = {});

  // Runs every request to the end. `cancel` (optional) is polled between steps; once set, the
  // unfinished requests end with FinishReason::Cancelled. Throws Error for bad requests (empty
  // prompt, token out of range, bad sampling parameters) before any step runs.
  std::vector<GenerationResult> generate(std::span<GenerationRequest> requests, const TokenCallback& on_token = {},
                                         const std::atomic<bool>* cancel = nullptr);

  const GenerationStats& last_stats() const { return stats_; }
  // The pool every request's cache takes its blocks from.
  const std::shared_ptr<BlockPool>& pool() const { return pool_; }

 private:
  Model& model_;
  EngineOptions opts_;
  std::shared_ptr<BlockPool> pool_;
  GenerationStats stats_;
};

}  // namespace dsv3
