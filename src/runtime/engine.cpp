#include "runtime/engine.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>

#include "base/error.h"

namespace dsv3 {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::Eos: return "eos";
    case FinishReason::Length: return "length";
    case FinishReason::Stop: return "stop";
    case FinishReason::Cancelled: return "cancelled";
  }
  return "?";
}

namespace {

// One request in flight.
struct Slot {
  GenerationRequest* req = nullptr;
  std::optional<Sampler> sampler;
  std::unique_ptr<SequenceCache> own_cache;  // when the request has no session
  SequenceCache* cache = nullptr;
  std::vector<int32_t> own_fed;
  std::vector<int32_t>* fed = nullptr;  // tokens in the cache, position order
  size_t prompt_next = 0;              // next prompt token to prefill
  int32_t pending = -1;                // sampled token to feed in the next step
  bool done = false;
};

}  // namespace

Engine::Engine(Model& model, EngineOptions opts)
    : model_(model),
      opts_(opts),
      pool_(std::make_shared<BlockPool>(model.cache_layout(opts.block_size, opts.cache_dtype), opts.kv_cache_blocks)) {
  DSV3_CHECK(opts_.max_step_tokens > 0, "max_step_tokens must be positive");
}

std::vector<GenerationResult> Engine::generate(std::span<GenerationRequest> requests, const TokenCallback& on_token,
                                               const std::atomic<bool>* cancel) {
  using Clock = std::chrono::steady_clock;
  const int64_t V = model_.config().vocab_size, H = model_.config().hidden_size;
  stats_ = {};
  std::vector<GenerationResult> results(requests.size());
  std::vector<Slot> slots(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    GenerationRequest& r = requests[i];
    if (r.prompt.empty()) fail("request {}: the prompt is empty", i);
    for (int32_t t : r.prompt)
      if (t < 0 || t >= V) fail("request {}: prompt token {} is out of range (vocabulary of {})", i, t, V);
    if (r.max_new_tokens < 1) fail("request {}: max_new_tokens must be at least 1, got {}", i, r.max_new_tokens);
    Slot& s = slots[i];
    s.req = &r;
    s.sampler.emplace(r.sampling);  // validates
    if (r.session) {
      s.cache = &r.session->cache;
      s.fed = &r.session->tokens;
      // Reuse the longest common prefix, but prefill at least the last prompt token: its
      // logits give the first new token.
      size_t keep = 0;
      while (keep < s.fed->size() && keep + 1 < r.prompt.size() && (*s.fed)[keep] == r.prompt[keep]) ++keep;
      s.cache->truncate(int64_t(keep));
      s.fed->resize(keep);
      s.prompt_next = keep;
      results[i].reused_tokens = int64_t(keep);
    } else {
      s.own_cache = std::make_unique<SequenceCache>(pool_);
      s.cache = s.own_cache.get();
      s.fed = &s.own_fed;
    }
    results[i].prompt_tokens = int64_t(r.prompt.size() - s.prompt_next);
  }
  std::vector<SequenceCache*> caches;
  for (auto& s : slots) caches.push_back(s.cache);

  std::vector<StepEntry> entries;
  std::vector<int32_t> rows;  // entry index of each logit row
  std::vector<size_t> row_slot;
  std::vector<float> hidden, logits;
  while (true) {
    if (cancel && cancel->load()) {
      for (size_t i = 0; i < slots.size(); ++i)
        if (!slots[i].done) {
          slots[i].done = true;
          results[i].finish = FinishReason::Cancelled;
        }
    }
    entries.clear();
    rows.clear();
    row_slot.clear();
    int64_t n_prompt_entries = 0;
    for (size_t i = 0; i < slots.size(); ++i) {
      Slot& s = slots[i];
      if (s.done || s.pending < 0) continue;
      rows.push_back(int32_t(entries.size()));
      row_slot.push_back(i);
      entries.push_back({int32_t(i), s.pending, int32_t(s.fed->size())});
    }
    int64_t budget = opts_.max_step_tokens - int64_t(entries.size());
    for (size_t i = 0; i < slots.size() && budget > 0; ++i) {
      Slot& s = slots[i];
      const auto& prompt = s.req->prompt;
      if (s.done || s.prompt_next >= prompt.size()) continue;
      const size_t n = std::min(prompt.size() - s.prompt_next, size_t(budget));
      for (size_t k = 0; k < n; ++k)
        entries.push_back({int32_t(i), prompt[s.prompt_next + k], int32_t(s.prompt_next + k)});
      s.prompt_next += n;
      budget -= int64_t(n);
      n_prompt_entries += int64_t(n);
      if (s.prompt_next == prompt.size()) {
        rows.push_back(int32_t(entries.size() - 1));
        row_slot.push_back(i);
      }
    }
    if (entries.empty()) break;

    const auto t0 = Clock::now();
    hidden.resize(entries.size() * size_t(H));
    logits.resize(rows.size() * size_t(V));
    model_.forward(entries, caches, {.absorbed = opts_.absorbed, .logit_rows = rows}, hidden.data(), logits.data());
    for (const auto& e : entries) slots[size_t(e.seq)].fed->push_back(e.token);
    for (auto& s : slots) s.pending = -1;

    for (size_t r = 0; r < rows.size(); ++r) {
      const size_t i = row_slot[r];
      Slot& s = slots[i];
      const int32_t tok = s.sampler->sample({logits.data() + r * size_t(V), size_t(V)});
      const auto& stop = s.req->stop_ids;
      if (std::find(stop.begin(), stop.end(), tok) != stop.end()) {
        s.done = true;
        results[i].finish = FinishReason::Eos;
        continue;
      }
      results[i].tokens.push_back(tok);
      if (on_token && !on_token(i, tok)) {
        s.done = true;
        results[i].finish = FinishReason::Stop;
      } else if (int64_t(results[i].tokens.size()) >= s.req->max_new_tokens) {
        s.done = true;
        results[i].finish = FinishReason::Length;
      } else {
        s.pending = tok;
      }
    }
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    ++stats_.steps;
    if (n_prompt_entries > 0) {
      stats_.prefill_s += dt;
      stats_.prefill_tokens += n_prompt_entries;
    } else {
      stats_.decode_s += dt;
      stats_.decode_tokens += int64_t(entries.size());
    }
  }
  return results;
}

}  // namespace dsv3
