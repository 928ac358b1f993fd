#include "runtime/scheduler.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>
#include <optional>

#include "base/error.h"

namespace dsv3 {

struct Scheduler::Choice {
  int index = 0;
  std::optional<Sampler> sampler;
  std::unique_ptr<SequenceCache> cache;  // null until the choice starts (choices > 0: at the fork)
  // The prompt, then every token sampled (the last one is fed in the next step): position k of
  // the cache holds tokens[k] for k < fed.
  std::vector<int32_t> tokens;
  int64_t fed = 0;
  std::vector<uint64_t> keys;  // prefix-cache keys of the cache's first full blocks
  int64_t generated = 0;
  bool done = false;
  std::vector<int32_t> counts;  // [vocab] occurrences in the output (penalties only)
  // Speculation: on for one-choice requests of a speculating scheduler until its gate says off;
  // the drafts after tokens.back() and their distributions; where this step's entries began.
  bool spec = false;
  SpeculationGate gate;
  std::vector<int32_t> drafts;
  std::vector<std::vector<TokenProb>> q;
  int64_t step_first_pos = -1;  // first position computed this step (-1: none)
  size_t step_first_entry = 0;
  int64_t step_drafts = 0;
  bool index_later = false;  // its new full blocks go to the prefix cache after drafting

  bool runnable() const { return !done && cache && fed < int64_t(tokens.size()); }
};

struct Scheduler::Active {
  ScheduledRequest req;
  RequestCallbacks cb;
  std::shared_ptr<RequestState> state;
  std::vector<Choice> choices;
  bool forked = false;     // choice 0 sampled its first token and the others started from its cache
  bool admitted = false;   // in the running batch
  bool ever_admitted = false;
  int64_t order = 0;       // admission order (preemption takes the newest)
  uint64_t seed = 0;       // prefix-cache chain of this request's salt
  std::vector<uint8_t> in_prompt;  // [vocab] (repetition penalty only)
  int64_t n_done = 0;
};

Scheduler::Scheduler(Model& model, SchedulerOptions opts) : model_(model), opts_(std::move(opts)) {
  if (opts_.ctx_size <= 0) opts_.ctx_size = model_.config().max_position_embeddings;
  DSV3_CHECK(opts_.max_running > 0 && opts_.max_step_tokens > 0 && opts_.max_queue >= 0, "bad scheduler options");
  pool_ = opts_.pool ? opts_.pool : std::make_shared<BlockPool>(model_.cache_layout(64), 0);
  const CacheLayout& lay = pool_->layout();
  if (lay.n_layers != model_.cache_layers() || lay.row != model_.cache_row())
    fail("the KV cache pool's layout ({} layers of {} values) does not fit the model ({} of {})", lay.n_layers,
         lay.row, model_.cache_layers(), model_.cache_row());
  if (opts_.prefix_caching) prefix_ = std::make_unique<PrefixCache>(pool_, opts_.prefix_namespace);
  stats_.cache_capacity_tokens =
      pool_->growable() ? opts_.max_running * opts_.ctx_size : pool_->n_blocks() * pool_->block_size();
  if (opts_.speculative.draft_tokens > 0) {
    if (opts_.before_forward)
      fail("speculative decoding is not available when the steps are mirrored to other ranks (serve under mpirun)");
    if (!model_.has_mtp()) fail("speculative decoding needs the checkpoint's MTP layer; this checkpoint has none");
    spec_cost_ = speculation_cost(model_.weights(), model_.config(), opts_.speculative.draft_tokens);
    // Under tensor parallelism each rank's weights are its own part: all take rank 0's cost, so
    // that every rank makes the same speculation decisions (parallel/comm.h).
    model_.comm().broadcast(&spec_cost_, sizeof spec_cost_, 0);
    stats_.spec_accepted_per_pos.assign(size_t(opts_.speculative.draft_tokens), 0);
  }
  stats_.kv_block_size = lay.block_size;
  stats_.kv_bytes_per_token = lay.token_bytes();
  refresh_pool_stats();
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
  // Caches go before the prefix cache and the pool they point into.
  running_.clear();
  prefix_.reset();
}

Scheduler::Admission Scheduler::admission(int64_t prompt_tokens) const {
  std::lock_guard lock(mu_);
  if (draining_ || stopping_) return Admission::Draining;
  if (int64_t(waiting_.size()) >= opts_.max_queue && !(waiting_.empty() && opts_.max_queue == 0))
    return Admission::QueueFull;
  if (waiting_tokens_ + prompt_tokens > opts_.max_queued_tokens && !waiting_.empty()) return Admission::QueueFull;
  return Admission::Ok;
}

std::shared_ptr<RequestState> Scheduler::submit(ScheduledRequest req, RequestCallbacks cb, Admission* refused) {
  const int64_t V = model_.config().vocab_size;
  if (req.prompt.empty()) fail("the prompt is empty");
  for (size_t i = 0; i < req.prompt.size(); ++i)
    if (req.prompt[i] < 0 || req.prompt[i] >= V)
      fail("prompt token {} (at {}) is out of range (vocabulary of {})", req.prompt[i], i, V);
  if (req.n < 1) fail("'n' must be at least 1, got {}", req.n);
  if (req.max_new_tokens < 1) fail("'max_tokens' must be at least 1, got {}", req.max_new_tokens);
  if (int64_t(req.prompt.size()) >= opts_.ctx_size)
    fail("the prompt has {} tokens; the context holds {} (one output token must fit)", req.prompt.size(),
         opts_.ctx_size);
  if (!pool_->growable()) {
    // The prompt plus one token, and a block of its own for each other choice, must fit the pool
    // on its own: a request that could never run is refused now rather than queued forever.
    const int64_t bs = pool_->block_size(), P = int64_t(req.prompt.size());
    const int64_t need = (P + 1 + bs - 1) / bs + (req.n - 1);
    if (need > pool_->n_blocks())
      fail("the prompt has {} tokens and needs {} KV cache blocks of {} tokens{}; the pool holds {} blocks ({} "
           "tokens; --kv-cache-mb)",
           P, need, bs, req.n > 1 ? fmt::format(" for its {} choices", req.n) : std::string(), pool_->n_blocks(),
           pool_->n_blocks() * bs);
  }
  if (req.top_logprobs > 20) fail("'top_logprobs' must be at most 20, got {}", req.top_logprobs);
  req.sampling.validate();
  if (!(req.penalties.repetition_penalty > 0) || !std::isfinite(req.penalties.repetition_penalty))
    fail("'repetition_penalty' must be > 0, got {}", req.penalties.repetition_penalty);
  req.max_new_tokens = std::min(req.max_new_tokens, opts_.ctx_size - int64_t(req.prompt.size()));

  auto a = std::make_unique<Active>();
  a->state = std::make_shared<RequestState>();
  a->choices.resize(size_t(req.n));
  for (int i = 0; i < req.n; ++i) {
    SamplingParams sp = req.sampling;
    sp.seed += uint64_t(i);
    a->choices[size_t(i)].index = i;
    a->choices[size_t(i)].sampler.emplace(sp);
    a->choices[size_t(i)].gate = SpeculationGate(spec_cost_.break_even_tokens(), opts_.speculative.adaptive,
                                                 opts_.speculative.draft_tokens + 1);
    a->choices[size_t(i)].spec = opts_.speculative.draft_tokens > 0 && req.n == 1 && a->choices[size_t(i)].gate.on();
  }
  a->choices[0].tokens = req.prompt;
  a->req = std::move(req);
  a->cb = std::move(cb);
  auto state = a->state;
  {
    std::lock_guard lock(mu_);
    Admission adm = Admission::Ok;
    if (draining_ || stopping_) {
      adm = Admission::Draining;
    } else if (!waiting_.empty() && (int64_t(waiting_.size()) >= opts_.max_queue ||
                                     waiting_tokens_ + int64_t(a->req.prompt.size()) > opts_.max_queued_tokens)) {
      adm = Admission::QueueFull;
    }
    if (refused) *refused = adm;
    if (adm != Admission::Ok) return nullptr;
    waiting_tokens_ += int64_t(a->req.prompt.size());
    waiting_.push_back(std::move(a));
    stats_.waiting = int64_t(waiting_.size());
  }
  cv_.notify_all();
  return state;
}

void Scheduler::drain() {
  std::lock_guard lock(mu_);
  draining_ = true;
}

void Scheduler::cancel_all() {
  {
    // Running requests belong to the scheduler thread; their states are shared.
    std::lock_guard lock(mu_);
    for (auto& a : waiting_) a->state->cancel();
    for (auto& s : running_states_) s->cancel();
  }
  cv_.notify_all();
}

bool Scheduler::idle() const {
  std::lock_guard lock(mu_);
  return waiting_.empty() && stats_.running == 0;
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

void Scheduler::refresh_pool_stats() {
  stats_.kv_blocks_total = pool_->n_blocks();
  stats_.kv_blocks_used = pool_->n_used();
  stats_.kv_blocks_cached = pool_->n_evictable();
}

void Scheduler::finish_choice(Active& a, Choice& c, FinishReason r) {
  if (c.done) return;
  c.done = true;
  {
    std::lock_guard lock(mu_);
    stats_.cache_tokens = std::max<int64_t>(0, stats_.cache_tokens - c.fed);
  }
  c.cache.reset();
  c.counts = {};
  ++a.n_done;
  if (a.n_done == int64_t(a.choices.size())) {
    // Counted before the last callback: a client reading /metrics right after its response
    // sees its request gone.
    std::lock_guard lock(mu_);
    stats_.running = std::max<int64_t>(0, stats_.running - (a.admitted ? 1 : 0));
    stats_.requests_finished_total += 1;
    refresh_pool_stats();
  }
  if (a.cb.on_finish) a.cb.on_finish(c.index, r);
}

void Scheduler::loop() {
  while (true) {
    std::vector<std::unique_ptr<Active>> dropped;  // cancelled while queued
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !waiting_.empty() || !running_.empty(); });
      if (stopping_) {
        for (auto& a : waiting_) dropped.push_back(std::move(a));
        waiting_.clear();
        for (auto& a : running_) a->state->cancel();
      } else {
        for (auto it = waiting_.begin(); it != waiting_.end();) {
          if ((*it)->state->cancelled() || ((*it)->cb.disconnected && (*it)->cb.disconnected())) {
            waiting_tokens_ -= int64_t((*it)->req.prompt.size());
            dropped.push_back(std::move(*it));
            it = waiting_.erase(it);
          } else {
            ++it;
          }
        }
      }
    }
    for (auto& a : dropped)
      for (auto& c : a->choices) finish_choice(*a, c, FinishReason::Cancelled);
    bool stop_now = false;
    {
      std::lock_guard lock(mu_);
      stop_now = stopping_;
    }
    // Cancelled or disconnected running requests leave before the next step.
    for (auto& a : running_)
      if (a->state->cancelled() || (a->cb.disconnected && a->cb.disconnected()))
        for (auto& c : a->choices) finish_choice(*a, c, FinishReason::Cancelled);
    sweep();
    if (stop_now) {
      DSV3_CHECK(running_.empty(), "scheduler: requests left at shutdown");
      return;
    }
    admit_waiting();
    preempted_ = false;
    if (!running_.empty() && !step() && !preempted_) {
      // Nothing could run: every running sequence waits for blocks that only a preemption frees.
      if (running_.size() > 1) {
        preempt(*running_.back());
      } else if (!running_.empty()) {
        // Alone and still out of blocks: its sequences outgrew the whole pool.
        Active& a = *running_.front();
        for (auto& c : a.choices)
          if (c.runnable()) finish_choice(a, c, FinishReason::Length);
      }
    }
    sweep();
  }
}

void Scheduler::sweep() {
  std::erase_if(running_, [&](const std::unique_ptr<Active>& a) { return a->n_done == int64_t(a->choices.size()); });
  std::lock_guard lock(mu_);
  // Preempted requests go back to the front of the queue, the oldest first.
  for (auto it = running_.rbegin(); it != running_.rend(); ++it)
    if (!(*it)->admitted) {
      waiting_tokens_ += int64_t((*it)->req.prompt.size());
      waiting_.push_front(std::move(*it));
    }
  std::erase_if(running_, [](const std::unique_ptr<Active>& a) { return !a; });
  running_states_.clear();
  int64_t seqs = 0, tokens = 0;
  for (auto& a : running_) {
    running_states_.push_back(a->state);
    for (auto& c : a->choices)
      if (!c.done) {
        ++seqs;
        tokens += c.fed;
      }
  }
  stats_.running = int64_t(running_.size());
  stats_.waiting = int64_t(waiting_.size());
  stats_.running_sequences = seqs;
  stats_.cache_tokens = tokens;
  refresh_pool_stats();
}

bool Scheduler::start(Active& a, bool must, int64_t& reserved) {
  const int64_t bs = pool_->block_size();
  int64_t need = 0, hit_tokens = 0;
  if (!a.ever_admitted) a.seed = prefix_ ? prefix_->chain_seed(a.req.cache_salt) : 0;
  for (auto& c : a.choices) {
    if (c.done || c.tokens.empty()) continue;  // choices > 0 start at the fork
    c.cache = std::make_unique<SequenceCache>(pool_);
    c.fed = 0;
    c.keys.clear();
    // At least the last token is fed: its logits give the next one.
    const int64_t T = int64_t(c.tokens.size());
    c.drafts.clear();
    if (prefix_) {
      // A speculating choice takes only blocks with their MTP rows, and those rows too.
      const auto hit = prefix_->match(a.seed, c.tokens, T - 1, &c.keys, c.spec);
      c.cache->adopt(hit, int64_t(hit.size()) * bs, c.spec ? model_.cache_layers() : model_.config().num_hidden_layers);
      for (int32_t b : hit) pool_->release(b);  // adopt took its own reference
      c.fed = int64_t(hit.size()) * bs;
      if (c.index == 0) hit_tokens = c.fed;
    }
    need += (T + bs - 1) / bs - c.fed / bs;
  }
  if (!a.forked) need += int64_t(a.choices.size()) - 1;  // the other choices' copies of the last block
  if (!must && need > pool_->n_available() - reserved) {
    for (auto& c : a.choices) {
      c.cache.reset();
      c.fed = 0;
      c.keys.clear();
    }
    return false;
  }
  reserved += need;
  if (!a.ever_admitted) {
    a.state->set_cached_tokens(hit_tokens);
    std::lock_guard lock(mu_);
    stats_.prefix_cache_queries_total += int64_t(a.req.prompt.size());
    stats_.prefix_cache_hits_total += hit_tokens;
  }
  return true;
}

void Scheduler::preempt(Active& a) {
  for (auto& c : a.choices) {
    c.cache.reset();  // releases its blocks, the last first; indexed ones stay for the recompute
    c.fed = 0;
    c.keys.clear();
  }
  a.admitted = false;  // sweep() queues it again
  preempted_ = true;
  std::lock_guard lock(mu_);
  ++stats_.preemptions_total;
  refresh_pool_stats();
}

void Scheduler::admit_waiting() {
  int64_t seqs = 0;
  // Blocks the running requests still need for the tokens they have not fed (prompts being
  // prefilled): a new request is admitted only when the pool has room beyond those.
  int64_t reserved = 0;
  for (auto& a : running_) {
    seqs += int64_t(a->choices.size()) - a->n_done;
    for (auto& c : a->choices)
      if (c.runnable()) reserved += c.cache->blocks_to_write(c.fed, int64_t(c.tokens.size()));
  }
  while (true) {
    std::unique_ptr<Active> next;
    {
      std::lock_guard lock(mu_);
      if (waiting_.empty()) break;
      Active& front = *waiting_.front();
      const int64_t live = int64_t(front.choices.size()) - front.n_done;
      // A request with more choices than max_running still runs, alone.
      if (!running_.empty() && seqs + live > opts_.max_running) break;
      next = std::move(waiting_.front());
      waiting_.pop_front();
    }
    // Blocks for its prompt (what the prefix cache lacks), or it waits; alone it always starts.
    if (!start(*next, running_.empty(), reserved)) {
      std::lock_guard lock(mu_);
      waiting_.push_front(std::move(next));
      break;
    }
    Active& a = *next;
    seqs += int64_t(a.choices.size()) - a.n_done;
    a.admitted = true;
    a.order = next_order_++;
    const bool first = !a.ever_admitted;
    a.ever_admitted = true;
    {
      std::lock_guard lock(mu_);
      waiting_tokens_ -= int64_t(a.req.prompt.size());
      running_states_.push_back(a.state);
      stats_.waiting = int64_t(waiting_.size());
      stats_.running = int64_t(running_.size()) + 1;
      refresh_pool_stats();
    }
    if (first && a.cb.on_admitted) a.cb.on_admitted(a.state->cached_tokens());
    running_.push_back(std::move(next));
  }
}

int64_t Scheduler::make_room(Active& a, Choice& c, int64_t from, int64_t to, bool may_preempt) {
  int64_t pos = from;
  while (pos < to) {
    if (c.cache->try_make_writable(pos)) {
      ++pos;
      continue;
    }
    if (!may_preempt) break;
    // Free the newest running request's blocks, unless that is this request itself.
    Active* newest = nullptr;
    for (auto& p : running_)
      if (p->admitted && (!newest || p->order > newest->order)) newest = p.get();
    if (!newest || newest == &a) break;
    preempt(*newest);
  }
  return pos - from;
}

void Scheduler::index_blocks(Active& a, Choice& c) {
  if (!prefix_) return;
  const int64_t bs = pool_->block_size();
  const auto blocks = c.cache->blocks();
  const int64_t mtp_rows = model_.has_mtp() ? c.cache->length(model_.config().num_hidden_layers) : 0;
  // A speculating choice indexes a block once its MTP rows are written too (an indexed block is
  // copied before a write).
  const int64_t end = c.spec ? std::min(c.fed, mtp_rows) : c.fed;
  for (int64_t k = int64_t(c.keys.size()); (k + 1) * bs <= end; ++k) {
    const uint64_t parent = k > 0 ? c.keys[size_t(k - 1)] : 0;
    const int32_t parent_block = k > 0 ? blocks[size_t(k - 1)] : -1;
    c.keys.push_back(prefix_->insert(a.seed, parent, parent_block,
                                     std::span<const int32_t>(c.tokens).subspan(size_t(k * bs), size_t(bs)),
                                     blocks[size_t(k)], mtp_rows >= (k + 1) * bs));
  }
}

bool Scheduler::step() {
  const int64_t V = model_.config().vocab_size, H = model_.config().hidden_size;
  struct Row {
    Active* a;
    int choice;
    int k = 0;  // 0: the choice's own token; k > 0: its draft k - 1 (judged with row k = 0)
  };
  std::vector<Row> row_of;
  entries_.clear();
  caches_.clear();
  rows_.clear();
  for (auto& ap : running_)
    for (auto& c : ap->choices) {
      c.step_first_pos = -1;
      c.step_drafts = 0;
    }
  // Oldest first: a request that runs short of blocks preempts newer ones, never older ones.
  std::vector<Active*> order;
  for (auto& ap : running_) order.push_back(ap.get());
  std::sort(order.begin(), order.end(), [](Active* x, Active* y) { return x->order < y->order; });

  // Decode entries first: every sequence with one token to feed.
  for (Active* ap : order) {
    Active& a = *ap;
    if (!a.admitted) continue;
    for (auto& c : a.choices) {
      if (!c.runnable() || int64_t(c.tokens.size()) - c.fed != 1) continue;
      if (make_room(a, c, c.fed, c.fed + 1, true) == 0) {
        // This request is the newest: it gives its blocks back and waits (unless it is alone,
        // which the caller handles when the step stays empty).
        bool others = false;
        for (auto& p : running_)
          if (p.get() != &a && p->admitted) others = true;
        if (others) preempt(a);
        break;
      }
      const int32_t seq = int32_t(caches_.size());
      caches_.push_back(c.cache.get());
      c.step_first_pos = c.fed;
      c.step_first_entry = entries_.size();
      rows_.push_back(int32_t(entries_.size()));
      row_of.push_back({&a, c.index});
      entries_.push_back({seq, c.tokens.back(), int32_t(c.fed)});
      // Its drafts, as far as the pool has room without preempting anyone.
      if (c.spec && !c.drafts.empty()) {
        const int64_t n = make_room(a, c, c.fed + 1, c.fed + 1 + int64_t(c.drafts.size()), false);
        c.drafts.resize(size_t(n));
        for (int64_t k = 0; k < n; ++k) {
          rows_.push_back(int32_t(entries_.size()));
          row_of.push_back({&a, c.index, int(k + 1)});
          entries_.push_back({seq, c.drafts[size_t(k)], int32_t(c.fed + 1 + k)});
        }
        c.step_drafts = n;
      }
    }
  }
  // A preempted request's entries (if it had any before its own preemption) leave the step;
  // rebuilt only in a step that preempted (decode steps otherwise keep their buffers as they are).
  if (preempted_) {
    std::vector<StepEntry> kept;
    std::vector<int32_t> kept_rows;
    std::vector<Row> kept_row_of;
    std::vector<SequenceCache*> kept_caches;
    for (size_t r = 0; r < rows_.size(); ++r) {
      if (!row_of[r].a->admitted) continue;
      StepEntry e = entries_[size_t(rows_[r])];
      if (row_of[r].k == 0) {  // a choice's first entry; its drafts follow with the same cache
        kept_caches.push_back(caches_[size_t(e.seq)]);
        row_of[r].a->choices[size_t(row_of[r].choice)].step_first_entry = kept.size();
      }
      e.seq = int32_t(kept_caches.size() - 1);
      kept_rows.push_back(int32_t(kept.size()));
      kept.push_back(e);
      kept_row_of.push_back(row_of[r]);
    }
    entries_ = std::move(kept);
    rows_ = std::move(kept_rows);
    row_of = std::move(kept_row_of);
    caches_ = std::move(kept_caches);
  }
  const int64_t n_decode = int64_t(entries_.size());
  int64_t budget = opts_.max_step_tokens - n_decode;
  // With streams decoding, a step's prompt chunk is sized so that the step takes at most
  // (1 + itl_prefill_ratio) decode steps: on a CPU a 2048-token chunk costs seconds, which would
  // freeze every stream for that long. The costs are running averages of this run's steps.
  if (n_decode > 0 && opts_.itl_prefill_ratio > 0 && decode_step_s_ > 0 && prefill_token_s_ > 0)
    budget = std::min(budget, std::max<int64_t>(opts_.min_prefill_chunk,
                                                int64_t(opts_.itl_prefill_ratio * decode_step_s_ / prefill_token_s_)));
  int64_t n_prompt = 0;
  for (Active* ap : order) {
    if (budget <= 0) break;
    Active& a = *ap;
    if (!a.admitted) continue;
    for (auto& c : a.choices) {
      if (budget <= 0) break;
      const int64_t left = int64_t(c.tokens.size()) - c.fed;
      if (!c.runnable() || left < 2) continue;
      // A chunk of what the pool can hold now (prompts do not preempt; decodes free blocks).
      const int64_t n = make_room(a, c, c.fed, c.fed + std::min(left, budget), false);
      if (n == 0) continue;
      const int32_t seq = int32_t(caches_.size());
      caches_.push_back(c.cache.get());
      c.step_first_pos = c.fed;
      c.step_first_entry = entries_.size();
      for (int64_t k = 0; k < n; ++k) entries_.push_back({seq, c.tokens[size_t(c.fed + k)], int32_t(c.fed + k)});
      budget -= n;
      n_prompt += n;
      if (c.fed + n == int64_t(c.tokens.size())) {
        rows_.push_back(int32_t(entries_.size() - 1));
        row_of.push_back({&a, c.index});
      }
    }
  }
  if (entries_.empty()) return false;

  const auto t0 = std::chrono::steady_clock::now();
  hidden_.resize(entries_.size() * size_t(H));
  logits_.resize(rows_.size() * size_t(V));
  if (opts_.before_forward) opts_.before_forward(entries_, caches_, rows_);
  model_.forward(entries_, caches_, {.absorbed = opts_.absorbed, .logit_rows = rows_}, hidden_.data(),
                 logits_.data());
  {
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    constexpr double kKeep = 0.8;  // running averages over the last few steps
    if (n_prompt == 0) {
      decode_step_s_ = decode_step_s_ > 0 ? kKeep * decode_step_s_ + (1 - kKeep) * dt : dt;
    } else {
      const double per_token = std::max(0.0, dt - (n_decode > 0 ? decode_step_s_ : 0.0)) / double(n_prompt);
      if (n_prompt >= 8 && per_token > 0)
        prefill_token_s_ = prefill_token_s_ > 0 ? kKeep * prefill_token_s_ + (1 - kKeep) * per_token : per_token;
    }
  }
  // Positions now in the caches; their full blocks go to the prefix cache (a speculating
  // choice's after its drafts are judged and its MTP rows written).
  for (auto& ap : running_)
    for (auto& c : ap->choices)
      if (!c.done && c.cache && ap->admitted) {
        c.fed = c.step_drafts > 0 ? c.step_first_pos + 1 : c.cache->length(0);
        c.index_later = c.spec;
        if (!c.spec) index_blocks(*ap, c);
      }

  {
    std::lock_guard lock(mu_);
    stats_.steps_total += 1;
    stats_.iteration_tokens_total += int64_t(entries_.size());
    stats_.prompt_tokens_total += n_prompt;
  }
  for (size_t r = 0; r < rows_.size(); ++r) {
    if (row_of[r].k > 0) continue;  // a draft: judged with its choice's first row
    Active& a = *row_of[r].a;
    const float* row = logits_.data() + r * size_t(V);
    Choice& c = a.choices[size_t(row_of[r].choice)];
    if (c.index == 0 && !a.forked) {
      // The prompt is in choice 0's cache: the other choices share its blocks from here on.
      a.forked = true;
      for (size_t i = 1; i < a.choices.size(); ++i) {
        Choice& o = a.choices[i];
        if (o.done) continue;
        o.cache = std::make_unique<SequenceCache>(*c.cache);
        o.tokens = c.tokens;
        o.fed = c.fed;
        o.keys = c.keys;
      }
      for (auto& o : a.choices)
        if (!o.done) sample_row(a, o, row);
      continue;
    }
    if (c.done) continue;
    if (c.step_drafts == 0) {
      sample_row(a, c, row);
      continue;
    }
    // Drafts: each kept while accepted; the first rejected one is replaced, or after the last
    // accepted draft the target's next token follows. Rejected positions leave the cache.
    int64_t kept = 0;
    for (int64_t k = 0; k <= c.step_drafts; ++k) {
      const float* lr = logits_.data() + (r + size_t(k)) * size_t(V);
      bool accepted = false;
      const bool alive = k < c.step_drafts ? sample_row(a, c, lr, &c.drafts[size_t(k)], c.q[size_t(k)], &accepted)
                                           : sample_row(a, c, lr);
      if (k < c.step_drafts) {
        std::lock_guard lock(mu_);
        ++stats_.spec_draft_tokens_total;
        if (accepted) {
          ++stats_.spec_accepted_tokens_total;
          ++stats_.spec_accepted_per_pos[size_t(k)];
        }
      }
      if (!alive || !accepted) break;
      ++kept;
    }
    {
      std::lock_guard lock(mu_);
      ++stats_.spec_num_drafts_total;
    }
    c.gate.record(int(kept) + 1);
    if (!c.gate.on()) c.spec = false;
    c.drafts.clear();
    if (!c.done) {
      c.cache->truncate(c.step_first_pos + 1 + kept);
      c.fed = c.step_first_pos + 1 + kept;
    }
  }
  if (opts_.speculative.draft_tokens > 0) draft(order);
  for (Active* ap : order)
    for (auto& c : ap->choices)
      if (c.index_later) {
        c.index_later = false;
        if (!c.done && c.cache && ap->admitted) index_blocks(*ap, c);
      }
  return true;
}

void Scheduler::draft(const std::vector<Active*>& order) {
  const int64_t H = model_.config().hidden_size, K = opts_.speculative.draft_tokens;
  jobs_.clear();
  std::vector<SequenceCache*> caches;
  std::vector<Choice*> job_choice;
  for (Active* ap : order) {
    Active& a = *ap;
    if (!a.admitted) continue;
    for (auto& c : a.choices) {
      if (!c.spec || c.done || !c.cache || c.step_first_pos < 0) continue;
      DraftJob& job = jobs_.emplace_back();
      job.seq = int32_t(caches.size());
      caches.push_back(c.cache.get());
      job_choice.push_back(&c);
      job.first_pos = c.step_first_pos;
      job.next.assign(c.tokens.begin() + c.step_first_pos + 1, c.tokens.begin() + c.fed + 1);
      job.hidden = hidden_.data() + c.step_first_entry * size_t(H);
      job.sampler = &*c.sampler;
      if (int64_t(c.tokens.size()) - c.fed == 1) {
        // Drafts for at most the tokens it may still generate after the next one, and chained
        // MTP rows only where the pool has room without preempting.
        const int64_t want = std::min(K, a.req.max_new_tokens - c.generated - 1);
        const int64_t room = want > 1 ? make_room(a, c, c.fed, c.fed + want - 1, false) : 0;
        job.max_drafts = int(std::max<int64_t>(0, std::min(want, room + 1)));
      }
    }
  }
  if (jobs_.empty()) return;
  draft_with_mtp(model_, caches, jobs_, opts_.absorbed);
  for (size_t j = 0; j < jobs_.size(); ++j) {
    Choice& c = *job_choice[j];
    if (jobs_[j].max_drafts < 0) c.spec = false;  // MTP rows missing (cannot happen: hits carry them)
    c.drafts = std::move(jobs_[j].drafts);
    c.q = std::move(jobs_[j].q);
    if (opts_.speculative.draft_override && !c.drafts.empty()) {
      const size_t n = c.drafts.size();
      opts_.speculative.draft_override(size_t(c.index), std::span<const int32_t>(c.tokens).first(size_t(c.fed)),
                                       c.tokens.back(), c.drafts);
      c.drafts.resize(std::min(n, c.drafts.size()));
      for (size_t k = 0; k < c.drafts.size(); ++k) c.q[k] = {{c.drafts[k], 1.0}};
    }
  }
}

bool Scheduler::sample_row(Active& a, Choice& c, const float* logits, const int32_t* draft,
                           std::span<const TokenProb> q_draft, bool* accepted) {
  const int64_t V = model_.config().vocab_size;
  const ScheduledRequest& q = a.req;
  const float* in = logits;
  const bool mask_stop = c.generated < q.min_new_tokens && !q.stop_ids.empty();
  if (q.penalties.active() || mask_stop || !q.logit_bias.empty()) {
    work_.assign(logits, logits + V);
    const PenaltyParams& p = q.penalties;
    if (p.repetition_penalty != 1) {
      if (a.in_prompt.empty()) {
        a.in_prompt.assign(size_t(V), 0);
        for (int32_t t : q.prompt) a.in_prompt[size_t(t)] = 1;
      }
      for (int64_t t = 0; t < V; ++t)
        if (a.in_prompt[size_t(t)] || (!c.counts.empty() && c.counts[size_t(t)] > 0))
          work_[size_t(t)] = work_[size_t(t)] > 0 ? work_[size_t(t)] / p.repetition_penalty
                                                  : work_[size_t(t)] * p.repetition_penalty;
    }
    if ((p.presence_penalty != 0 || p.frequency_penalty != 0) && !c.counts.empty())
      for (int64_t t = 0; t < V; ++t)
        if (const int32_t n = c.counts[size_t(t)]; n > 0)
          work_[size_t(t)] -= p.frequency_penalty * float(n) + p.presence_penalty;
    for (const auto& [t, b] : q.logit_bias)
      if (t >= 0 && t < V) work_[size_t(t)] += b;
    if (mask_stop)
      for (int32_t s : q.stop_ids)
        if (s >= 0 && s < V) work_[size_t(s)] = -std::numeric_limits<float>::infinity();
    in = work_.data();
  }
  SampledToken tok;
  if (draft) {
    const DraftVerdict v = verify_draft(*c.sampler, {in, size_t(V)}, *draft, q_draft, scratch_);
    tok.id = v.token;
    *accepted = v.accepted;
  } else {
    tok.id = c.sampler->sample({in, size_t(V)});
  }
  if (std::find(q.stop_ids.begin(), q.stop_ids.end(), tok.id) != q.stop_ids.end()) {
    finish_choice(a, c, FinishReason::Eos);
    return false;
  }
  if (q.top_logprobs >= 0) {
    // log_softmax of the raw logits, summed in double.
    const float mx = *std::max_element(logits, logits + V);
    double sum = 0;
    for (int64_t t = 0; t < V; ++t) sum += std::exp(double(logits[t] - mx));
    const double lse = double(mx) + std::log(sum);
    tok.logprob = float(double(logits[tok.id]) - lse);
    if (q.top_logprobs > 0) {
      std::vector<int32_t> ids(static_cast<size_t>(V));
      std::iota(ids.begin(), ids.end(), 0);
      const auto before = [&](int32_t x, int32_t y) { return logits[x] != logits[y] ? logits[x] > logits[y] : x < y; };
      std::partial_sort(ids.begin(), ids.begin() + q.top_logprobs, ids.end(), before);
      for (int k = 0; k < q.top_logprobs; ++k)
        tok.top_logprobs.push_back({ids[size_t(k)], float(double(logits[ids[size_t(k)]]) - lse)});
    }
  }
  ++c.generated;
  {
    std::lock_guard lock(mu_);
    ++stats_.generation_tokens_total;
  }
  if (q.penalties.presence_penalty != 0 || q.penalties.frequency_penalty != 0 || q.penalties.repetition_penalty != 1) {
    if (c.counts.empty()) c.counts.assign(size_t(V), 0);
    ++c.counts[size_t(tok.id)];
  }
  if (a.cb.on_token && !a.cb.on_token(c.index, tok)) {
    finish_choice(a, c, FinishReason::Stop);
  } else if (c.generated >= q.max_new_tokens) {
    finish_choice(a, c, FinishReason::Length);
  } else {
    c.tokens.push_back(tok.id);
    return true;
  }
  return false;
}

}  // namespace dsv3
