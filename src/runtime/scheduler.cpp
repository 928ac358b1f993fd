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
  std::unique_ptr<SequenceCache> cache;
  int64_t fed = 0;       // positions in the cache
  int32_t pending = -1;  // sampled token to feed next step
  int64_t generated = 0;
  bool done = false;
  std::vector<int32_t> counts;  // [vocab] occurrences in the output (penalties only)
};

struct Scheduler::Active {
  ScheduledRequest req;
  RequestCallbacks cb;
  std::shared_ptr<RequestState> state;
  std::vector<Choice> choices;
  size_t prompt_next = 0;  // next prompt token to prefill (into choice 0's cache)
  bool admitted = false;   // left the queue for the running batch
  std::vector<uint8_t> in_prompt;  // [vocab] (repetition penalty only)
  int64_t n_done = 0;
};

Scheduler::Scheduler(Model& model, SchedulerOptions opts) : model_(model), opts_(opts) {
  if (opts_.ctx_size <= 0) opts_.ctx_size = model_.config().max_position_embeddings;
  DSV3_CHECK(opts_.max_running > 0 && opts_.max_step_tokens > 0 && opts_.max_queue >= 0, "bad scheduler options");
  stats_.cache_capacity_tokens = opts_.max_running * opts_.ctx_size;
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
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
  }
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
    if (!running_.empty()) step();
    sweep();
  }
}

void Scheduler::sweep() {
  std::erase_if(running_, [&](const std::unique_ptr<Active>& a) { return a->n_done == int64_t(a->choices.size()); });
  std::lock_guard lock(mu_);
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
}

void Scheduler::admit_waiting() {
  std::lock_guard lock(mu_);
  int64_t seqs = 0;
  for (auto& a : running_) seqs += int64_t(a->choices.size()) - a->n_done;
  while (!waiting_.empty()) {
    Active& next = *waiting_.front();
    // A request with more choices than max_running still runs, alone.
    if (!running_.empty() && seqs + next.req.n > opts_.max_running) break;
    seqs += next.req.n;
    next.admitted = true;
    waiting_tokens_ -= int64_t(next.req.prompt.size());
    next.choices[0].cache = std::make_unique<SequenceCache>(model_.new_cache());
    if (next.cb.on_admitted) next.cb.on_admitted();
    running_states_.push_back(next.state);
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
  stats_.waiting = int64_t(waiting_.size());
  stats_.running = int64_t(running_.size());
}

namespace {
// Room for position `pos` (and a little more) in `cache`, grown geometrically up to the context.
void ensure_capacity(SequenceCache& cache, int64_t pos, int64_t ctx) {
  if (pos < cache.capacity()) return;
  cache.reserve(std::min(ctx, std::max<int64_t>(pos + 1, std::max<int64_t>(64, cache.capacity() * 2))));
}
}  // namespace

bool Scheduler::step() {
  const int64_t V = model_.config().vocab_size, H = model_.config().hidden_size;
  struct Row {
    Active* a;
    int choice;  // -1: the prompt's last token (every choice samples from it)
  };
  std::vector<Row> row_of;
  entries_.clear();
  caches_.clear();
  rows_.clear();
  for (auto& ap : running_) {
    for (auto& c : ap->choices) {
      if (c.done || c.pending < 0) continue;
      ensure_capacity(*c.cache, c.fed, opts_.ctx_size);
      rows_.push_back(int32_t(entries_.size()));
      row_of.push_back({ap.get(), c.index});
      entries_.push_back({int32_t(caches_.size()), c.pending, int32_t(c.fed)});
      caches_.push_back(c.cache.get());
    }
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
  for (auto& ap : running_) {
    if (budget <= 0) break;
    Active& a = *ap;
    const auto& prompt = a.req.prompt;
    if (a.prompt_next >= prompt.size() || a.choices[0].done) continue;
    Choice& c0 = a.choices[0];
    const size_t n = std::min(prompt.size() - a.prompt_next, size_t(budget));
    ensure_capacity(*c0.cache, int64_t(a.prompt_next + n) - 1, opts_.ctx_size);
    const int32_t seq = int32_t(caches_.size());
    caches_.push_back(c0.cache.get());
    for (size_t k = 0; k < n; ++k) entries_.push_back({seq, prompt[a.prompt_next + k], int32_t(a.prompt_next + k)});
    a.prompt_next += n;
    budget -= int64_t(n);
    n_prompt += int64_t(n);
    if (a.prompt_next == prompt.size()) {
      rows_.push_back(int32_t(entries_.size() - 1));
      row_of.push_back({&a, -1});
    }
  }
  if (entries_.empty()) return false;

  const auto t0 = std::chrono::steady_clock::now();
  hidden_.resize(entries_.size() * size_t(H));
  logits_.resize(rows_.size() * size_t(V));
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
  // Positions now in the caches.
  for (auto& ap : running_)
    for (auto& c : ap->choices)
      if (!c.done && c.cache) c.fed = c.cache->length(0);

  {
    std::lock_guard lock(mu_);
    stats_.steps_total += 1;
    stats_.iteration_tokens_total += int64_t(entries_.size());
    stats_.prompt_tokens_total += n_prompt;
  }
  for (size_t r = 0; r < rows_.size(); ++r) {
    Active& a = *row_of[r].a;
    const float* row = logits_.data() + r * size_t(V);
    if (row_of[r].choice >= 0) {
      Choice& c = a.choices[size_t(row_of[r].choice)];
      c.pending = -1;
      if (!c.done) sample_row(a, c, row);
      continue;
    }
    // The prompt is in choice 0's cache: the other choices start from copies of it.
    for (size_t i = 1; i < a.choices.size(); ++i) {
      a.choices[i].cache = std::make_unique<SequenceCache>(*a.choices[0].cache);
      a.choices[i].fed = a.choices[0].fed;
    }
    for (auto& c : a.choices)
      if (!c.done) sample_row(a, c, row);
  }
  return true;
}

void Scheduler::sample_row(Active& a, Choice& c, const float* logits) {
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
  tok.id = c.sampler->sample({in, size_t(V)});
  if (std::find(q.stop_ids.begin(), q.stop_ids.end(), tok.id) != q.stop_ids.end()) {
    finish_choice(a, c, FinishReason::Eos);
    return;
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
    c.pending = tok.id;
  }
}

}  // namespace dsv3
