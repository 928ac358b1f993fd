// Continuous batching for a server: requests arrive at any time from other threads, join the
// running batch at step boundaries, and leave it on their own EOS, token limit, stop (the token
// callback says so), cancellation or client disconnect. One thread runs the steps; each step is
// one Model::forward over every running sequence's decode entry first, then prompt chunks up to
// max_step_tokens (vLLM's "chunked prefill prioritises decode", SERVER.md §3.1), so a long
// prompt never freezes the streams already decoding.
//
//   Scheduler sched(model, {.max_running = 8});
//   auto handle = sched.submit(std::move(req), callbacks);   // nullptr: queue full / draining
//   ... callbacks run on the scheduler thread; handle->cancel() from any thread ...
//
// A request has n choices (OpenAI `n`): the prompt is prefilled once and the other choices share
// its cache blocks after the prefill (copy on write), each then samples with its own seed (seed
// + choice).
//
// Caches live in one block pool (model/kv_cache.h) with a prefix cache over it
// (runtime/prefix_cache.h): a prompt prefills only what no cached block covers. A request waits
// in the queue until the pool has blocks for its prompt; when running sequences need a block and
// none is free, the newest running request is preempted (its blocks released, the request queued
// again at the front and later recomputed, mostly from its own cached blocks): never an
// allocation past the pool.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <string>

#include "model/model.h"
#include "runtime/engine.h"
#include "runtime/prefix_cache.h"
#include "runtime/sampler.h"
#include "runtime/speculative.h"

namespace dsv3 {

// OpenAI's presence/frequency penalties (subtracted from the logits of tokens generated so far:
// presence once, frequency per occurrence; platform.openai.com "parameter details") and the
// CTRL/transformers repetition penalty over prompt and output tokens (positive logits divided,
// negative multiplied). Applied to the logits before sampling; logprobs are of the raw logits.
struct PenaltyParams {
  float presence_penalty = 0;   // [-2, 2]
  float frequency_penalty = 0;  // [-2, 2]
  float repetition_penalty = 1;  // > 0; 1 = off
  bool active() const { return presence_penalty != 0 || frequency_penalty != 0 || repetition_penalty != 1; }
};

struct ScheduledRequest {
  std::vector<int32_t> prompt;  // non-empty, ids < vocab_size
  int n = 1;                    // choices
  SamplingParams sampling;      // choice i samples with seed + i
  PenaltyParams penalties;
  int64_t max_new_tokens = 16;    // per choice; clipped to the context left after the prompt
  int64_t min_new_tokens = 0;     // stop ids are not sampled before this many tokens (their logits masked)
  std::vector<int32_t> stop_ids;  // finish with Eos without reporting the token
  std::vector<std::pair<int32_t, float>> logit_bias;  // added to the logits before sampling (OpenAI logit_bias)
  int top_logprobs = -1;          // -1: no logprobs; 0..20: the chosen token's logprob and this many alternatives
  std::string cache_salt;         // prefix-cache namespace of its own (vLLM's cache_salt); "" = shared
};

// One sampled token of one choice, as reported to the callbacks.
struct SampledToken {
  int32_t id = 0;
  float logprob = 0;                                    // of the raw logits (log_softmax), when asked
  std::vector<std::pair<int32_t, float>> top_logprobs;  // most likely first
};

struct RequestCallbacks {
  // Scheduler thread, once per generated token (never a stop id); return false to finish the
  // choice with FinishReason::Stop (a stop string completed). The token counts as generated.
  std::function<bool(int choice, const SampledToken&)> on_token;
  // Scheduler thread, exactly once per choice, after its last token.
  std::function<void(int choice, FinishReason reason)> on_finish;
  // Scheduler thread, when the request first leaves the queue for the running batch, with the
  // prompt tokens that cached blocks held (not prefilled; RequestState::cached_tokens).
  std::function<void(int64_t cached_tokens)> on_admitted;
  // Scheduler thread, at every step boundary while the request is queued or running; return
  // true when the client is gone: the request then finishes as Cancelled and its caches are freed.
  std::function<bool()> disconnected;
};

// Shared between the submitter and the scheduler.
class RequestState {
 public:
  // Any thread: finish every choice as Cancelled at the next step boundary.
  void cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }
  // Prompt tokens not prefilled because cached blocks held them (when the request first ran;
  // OpenAI's usage.prompt_tokens_details.cached_tokens). Set before on_admitted runs.
  int64_t cached_tokens() const { return cached_tokens_.load(); }
  void set_cached_tokens(int64_t n) { cached_tokens_.store(n); }

 private:
  std::atomic<bool> cancelled_{false};
  std::atomic<int64_t> cached_tokens_{0};
};

struct SchedulerOptions {
  int64_t max_running = 8;          // sequences (choices) in the running batch
  int64_t max_queue = 64;           // requests waiting to run
  int64_t max_queued_tokens = 1 << 20;  // prompt tokens waiting to run
  int64_t max_step_tokens = 2048;   // entries per forward step
  int64_t ctx_size = 0;             // most positions per sequence (0: max_position_embeddings)
  // While sequences decode, a step's prompt chunk is cut so that the step lasts at most
  // (1 + itl_prefill_ratio) times a decode-only step (measured), never below min_prefill_chunk
  // tokens: inter-token latency stays bounded while a long prompt arrives. 0 = off.
  double itl_prefill_ratio = 1.0;
  int64_t min_prefill_chunk = 16;
  bool absorbed = true;
  // The KV cache every sequence takes its blocks from (null: a pool of 64-token f32 blocks that
  // grows on demand). A fixed pool bounds the cache memory; see the class comment.
  std::shared_ptr<BlockPool> pool;
  bool prefix_caching = true;
  uint64_t prefix_namespace = 0;  // prefix_namespace(model identity, dtype): keeps models apart
  // MTP speculative decoding for requests with one choice (n > 1 runs without). Cached prefix
  // blocks carry their MTP rows: a speculating request takes only blocks whose MTP rows were
  // written (by another speculating request), so its drafts see the same cache either way.
  SpeculativeOptions speculative;
  // Runs on the scheduler thread with each step's inputs right before its Model::forward (the
  // entries, one cache per sequence, the entries whose logits are wanted): a tensor-parallel
  // server's rank 0 sends them to the other ranks (runtime/step_mirror.h). Not with speculative
  // decoding (its drafting steps are not mirrored): the constructor throws Error.
  std::function<void(std::span<const StepEntry>, std::span<SequenceCache* const>, std::span<const int32_t>)>
      before_forward;
};

// A snapshot for /metrics and /health.
struct SchedulerStats {
  int64_t running = 0;          // requests with a sequence in the batch
  int64_t waiting = 0;          // requests queued
  int64_t running_sequences = 0;
  int64_t cache_tokens = 0;     // positions held in the running sequences' caches
  int64_t cache_capacity_tokens = 0;  // positions the pool holds (fixed pool), else max_running * ctx_size
  int64_t kv_blocks_total = 0, kv_blocks_used = 0, kv_blocks_cached = 0;  // pool blocks: all, referenced, evictable
  int64_t kv_block_size = 0, kv_bytes_per_token = 0;
  int64_t prefix_cache_queries_total = 0, prefix_cache_hits_total = 0;  // prompt tokens looked up / found
  int64_t preemptions_total = 0;
  int64_t prompt_tokens_total = 0, generation_tokens_total = 0, steps_total = 0;
  int64_t iteration_tokens_total = 0;  // entries over all steps
  int64_t requests_finished_total = 0;
  // Speculative decoding (vLLM's spec_decode metrics): verify steps with drafts, drafts proposed,
  // drafts accepted, and the accepted ones by draft position.
  int64_t spec_num_drafts_total = 0, spec_draft_tokens_total = 0, spec_accepted_tokens_total = 0;
  std::vector<int64_t> spec_accepted_per_pos;
};

class Scheduler {
 public:
  Scheduler(Model& model, SchedulerOptions opts);
  ~Scheduler();  // cancels everything and joins the thread
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  const SchedulerOptions& options() const { return opts_; }

  enum class Admission { Ok, QueueFull, Draining };
  // Cheap check before any tokenizing (SERVER.md §3.4: refuse before expensive preprocessing).
  Admission admission(int64_t prompt_tokens = 0) const;

  // Queues a request. Throws Error for bad requests (empty prompt, id out of range, n < 1, bad
  // sampling values, prompt not fitting the context). Returns nullptr and sets `refused` when
  // the queue is full or the scheduler is draining.
  std::shared_ptr<RequestState> submit(ScheduledRequest req, RequestCallbacks cb, Admission* refused = nullptr);

  // Stops admitting (admission() says Draining); running requests go on.
  void drain();
  // Cancels every queued and running request (they finish as Cancelled at the next boundary).
  void cancel_all();
  // True when nothing is queued or running.
  bool idle() const;

  SchedulerStats stats() const;

 private:
  struct Choice;
  struct Active;
  void loop();
  void admit_waiting();
  // Gives a's choices their caches, from cached blocks where the prefix cache has them; false
  // (nothing held) when the pool cannot take the rest of its tokens beyond `reserved` blocks
  // (promised to requests already running) unless `must`. Adds its own need to `reserved`.
  bool start(Active& a, bool must, int64_t& reserved);
  // Releases every cache of a and queues it again at the front (recomputed later).
  void preempt(Active& a);
  // Positions [from, to) of c writable; preempts newer requests than `a` when the pool is out.
  // Returns the positions made writable (from.. that), fewer when nothing could be freed.
  int64_t make_room(Active& a, Choice& c, int64_t from, int64_t to, bool may_preempt);
  // Offers c's newly full blocks to the prefix cache.
  void index_blocks(Active& a, Choice& c);
  void refresh_pool_stats();  // under mu_
  // Removes requests whose choices all finished and refreshes the running counts.
  void sweep();
  bool step();
  void finish_choice(Active& a, Choice& c, FinishReason r);
  // Samples c's next token from a row of logits (penalties, bias and masks applied), or, given a
  // draft, accepts it or replaces it (runtime/speculative.h); reports the token. Returns false
  // when the choice finished; *accepted tells whether the draft was kept.
  bool sample_row(Active& a, Choice& c, const float* logits, const int32_t* draft = nullptr,
                  std::span<const TokenProb> q = {}, bool* accepted = nullptr);
  // MTP rows of the positions this step computed and the next drafts of speculating choices.
  void draft(const std::vector<Active*>& order);

  Model& model_;
  SchedulerOptions opts_;
  std::shared_ptr<BlockPool> pool_;
  std::unique_ptr<PrefixCache> prefix_;
  int64_t next_order_ = 0;
  bool preempted_ = false;  // a preemption happened in this step (scheduler thread)  // admission order: the newest running request is preempted first
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Active>> waiting_;  // guarded by mu_
  int64_t waiting_tokens_ = 0;                    // guarded by mu_
  bool draining_ = false, stopping_ = false;      // guarded by mu_
  std::vector<std::unique_ptr<Active>> running_;  // scheduler thread only
  std::vector<std::shared_ptr<RequestState>> running_states_;  // guarded by mu_: for cancel_all
  SchedulerStats stats_;                          // guarded by mu_ (counters updated per step)
  // Step buffers (scheduler thread).
  std::vector<StepEntry> entries_;
  std::vector<SequenceCache*> caches_;
  std::vector<int32_t> rows_;
  std::vector<float> hidden_, logits_, work_;
  std::vector<TokenProb> scratch_;
  std::vector<DraftJob> jobs_;
  SpeculationCost spec_cost_;
  double decode_step_s_ = 0;    // running average of a decode-only step
  double prefill_token_s_ = 0;  // running average of one prompt token's cost in a step
  std::thread thread_;
};

}  // namespace dsv3
