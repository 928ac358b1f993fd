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
  // Speculation: drafts for the positions after `pending`, and the distributions they were
  // drawn from; the entries and logit rows this step gave the sequence.
  SpeculationGate gate;
  bool spec = false;
  std::vector<int32_t> drafts;
  std::vector<std::vector<TokenProb>> q;
  size_t first_entry = 0, n_entries = 0, first_row = 0, n_rows = 0;
};

}  // namespace

Engine::Engine(Model& model, EngineOptions opts)
    : model_(model),
      opts_(opts),
      pool_(std::make_shared<BlockPool>(model.cache_layout(opts.block_size, opts.cache_dtype), opts.kv_cache_blocks)) {
  DSV3_CHECK(opts_.max_step_tokens > 0, "max_step_tokens must be positive");
  if (opts_.speculative.draft_tokens < 0) fail("the number of draft tokens must be >= 0, got {}", opts_.speculative.draft_tokens);
  if (opts_.speculative.draft_tokens > 0) {
    if (!model_.has_mtp())
      fail("speculative decoding with MTP needs the checkpoint's MTP layer (layer {}); this checkpoint has none "
           "(num_nextn_predict_layers is 0)",
           model_.config().num_hidden_layers);
    cost_ = dsv3::speculation_cost(model_.weights(), model_.config(), opts_.speculative.draft_tokens);
    // Under tensor parallelism each rank's weights are its own part: all take rank 0's cost, so
    // that every rank makes the same speculation decisions (parallel/comm.h).
    model_.comm().broadcast(&cost_, sizeof cost_, 0);
  }
}

std::vector<GenerationResult> Engine::generate(std::span<GenerationRequest> requests, const TokenCallback& on_token,
                                               const std::atomic<bool>* cancel) {
  using Clock = std::chrono::steady_clock;
  const int64_t V = model_.config().vocab_size, H = model_.config().hidden_size;
  const int64_t L = model_.config().num_hidden_layers;  // the MTP layer's cache index
  const int K = opts_.speculative.draft_tokens;
  stats_ = {};
  stats_.speculative.drafted.assign(size_t(K), 0);
  stats_.speculative.accepted.assign(size_t(K), 0);
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
    s.gate = SpeculationGate(cost_.break_even_tokens(), opts_.speculative.adaptive, K + 1);
    s.spec = K > 0 && s.gate.on();
    if (r.session) {
      s.cache = &r.session->cache;
      s.fed = &r.session->tokens;
      // Reuse the longest common prefix, but prefill at least the last prompt token: its
      // logits give the first new token.
      size_t keep = 0;
      while (keep < s.fed->size() && keep + 1 < r.prompt.size() && (*s.fed)[keep] == r.prompt[keep]) ++keep;
      if (s.spec) {
        // MTP row j holds (state j, token j + 1): rows before keep - 1 still hold this prompt's
        // tokens. The main model recomputes from the first missing MTP row (its state is needed).
        const int64_t mtp_rows = std::min<int64_t>(s.cache->length(L), int64_t(keep) - 1);
        keep = size_t(std::max<int64_t>(0, mtp_rows));
      }
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
  std::vector<float> hidden, logits;
  std::vector<DraftJob> jobs;
  std::vector<TokenProb> scratch;
  SpeculativeStats& spec = stats_.speculative;

  // Reports a generated token; false when the slot finished on it.
  const auto emit = [&](size_t i, int32_t tok) {
    Slot& s = slots[i];
    const auto& stop = s.req->stop_ids;
    if (std::find(stop.begin(), stop.end(), tok) != stop.end()) {
      s.done = true;
      results[i].finish = FinishReason::Eos;
      return false;
    }
    results[i].tokens.push_back(tok);
    if (on_token && !on_token(i, tok)) {
      s.done = true;
      results[i].finish = FinishReason::Stop;
      return false;
    }
    if (int64_t(results[i].tokens.size()) >= s.req->max_new_tokens) {
      s.done = true;
      results[i].finish = FinishReason::Length;
      return false;
    }
    return true;
  };

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
    int64_t n_prompt_entries = 0, n_drafts = 0;
    for (size_t i = 0; i < slots.size(); ++i) {
      Slot& s = slots[i];
      s.n_entries = s.n_rows = 0;
      if (s.done || s.pending < 0) continue;
      // The sampled token, then the drafts after it; a logit row for each.
      s.first_entry = entries.size();
      s.first_row = rows.size();
      const int32_t P = int32_t(s.fed->size());
      if (!s.spec) s.drafts.clear();
      for (size_t k = 0; k <= s.drafts.size(); ++k) {
        rows.push_back(int32_t(entries.size()));
        entries.push_back({int32_t(i), k == 0 ? s.pending : s.drafts[k - 1], P + int32_t(k)});
      }
      s.n_entries = s.n_rows = s.drafts.size() + 1;
      n_drafts += int64_t(s.drafts.size());
    }
    int64_t budget = opts_.max_step_tokens - int64_t(entries.size());
    for (size_t i = 0; i < slots.size() && budget > 0; ++i) {
      Slot& s = slots[i];
      const auto& prompt = s.req->prompt;
      if (s.done || s.prompt_next >= prompt.size()) continue;
      const size_t n = std::min(prompt.size() - s.prompt_next, size_t(budget));
      s.first_entry = entries.size();
      s.first_row = rows.size();
      s.n_entries = n;
      for (size_t k = 0; k < n; ++k)
        entries.push_back({int32_t(i), prompt[s.prompt_next + k], int32_t(s.prompt_next + k)});
      s.prompt_next += n;
      budget -= int64_t(n);
      n_prompt_entries += int64_t(n);
      if (s.prompt_next == prompt.size()) {
        rows.push_back(int32_t(entries.size() - 1));
        s.n_rows = 1;
      }
    }
    if (entries.empty()) break;

    const auto t0 = Clock::now();
    hidden.resize(entries.size() * size_t(H));
    logits.resize(rows.size() * size_t(V));
    model_.forward(entries, caches, {.absorbed = opts_.absorbed, .logit_rows = rows}, hidden.data(), logits.data());
    const double forward_s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (n_drafts > 0) spec.verify_s += forward_s;

    int64_t generated = 0;
    for (size_t i = 0; i < slots.size(); ++i) {
      Slot& s = slots[i];
      if (s.n_entries == 0) continue;
      const int32_t first_pos = entries[s.first_entry].pos;
      if (s.pending < 0) {
        // A prompt chunk: in the cache as it is.
        for (size_t k = 0; k < s.n_entries; ++k) s.fed->push_back(entries[s.first_entry + k].token);
        if (s.n_rows == 1) {
          ++generated;
          const int32_t tok = s.sampler->sample({logits.data() + s.first_row * size_t(V), size_t(V)});
          if (emit(i, tok)) s.pending = tok;
        }
        continue;
      }
      // Decode: the sampled token is in the cache; each draft is kept while accepted.
      s.fed->push_back(s.pending);
      s.pending = -1;
      const size_t n_drafts_here = s.drafts.size();
      size_t kept = 0;
      for (size_t k = 0; k <= n_drafts_here; ++k) {
        const std::span<const float> row(logits.data() + (s.first_row + k) * size_t(V), size_t(V));
        int32_t tok;
        bool accepted = false;
        if (k < n_drafts_here) {
          const DraftVerdict v = verify_draft(*s.sampler, row, s.drafts[k], s.q[k], scratch);
          ++spec.drafted[k];
          if (v.accepted) ++spec.accepted[k];
          tok = v.token;
          accepted = v.accepted;
        } else {
          tok = s.sampler->sample(row);
        }
        ++generated;
        if (!emit(i, tok)) break;
        if (!accepted) {
          s.pending = tok;
          break;
        }
        // An accepted draft is already in the cache at its position.
        s.fed->push_back(tok);
        ++kept;
      }
      if (n_drafts_here > 0) {
        ++spec.rounds;
        spec.emitted += int64_t(kept) + 1;
        if (s.gate.record(int(kept) + 1)) ++spec.turned_off;
        if (!s.gate.on()) s.spec = false;
      }
      // Positions after the last kept token leave the cache (rejected drafts).
      s.cache->truncate(first_pos + 1 + int64_t(kept));
      s.drafts.clear();
    }

    // Drafting: the MTP rows of every position this step computed (state j with token j + 1),
    // then up to K drafts chained from the last one.
    double draft_s = 0;
    if (K > 0) {
      const auto d0 = Clock::now();
      jobs.clear();
      for (size_t i = 0; i < slots.size(); ++i) {
        Slot& s = slots[i];
        if (s.n_entries == 0 || !s.spec || s.done) continue;
        const int64_t first_pos = entries[s.first_entry].pos, end = int64_t(s.fed->size());
        DraftJob& job = jobs.emplace_back();
        job.seq = int32_t(i);
        job.first_pos = first_pos;
        for (int64_t j = first_pos + 1; j <= end; ++j)
          job.next.push_back(j < end ? (*s.fed)[size_t(j)] : s.pending >= 0 ? s.pending : s.req->prompt[size_t(j)]);
        job.hidden = hidden.data() + s.first_entry * size_t(H);
        job.sampler = &*s.sampler;
        // Drafts for at most the tokens it may still generate after its pending one.
        job.max_drafts =
            s.pending < 0 ? 0 : int(std::min<int64_t>(K, s.req->max_new_tokens - int64_t(results[i].tokens.size()) - 1));
      }
      draft_with_mtp(model_, caches, jobs, opts_.absorbed);
      for (auto& job : jobs) {
        Slot& s = slots[size_t(job.seq)];
        if (job.max_drafts < 0) s.spec = false;  // MTP rows missing: cannot happen (session reuse keeps them whole)
        s.drafts = std::move(job.drafts);
        s.q = std::move(job.q);
      }
      if (opts_.speculative.draft_override)
        for (size_t i = 0; i < slots.size(); ++i) {
          Slot& s = slots[i];
          if (s.drafts.empty()) continue;
          const size_t n = s.drafts.size();
          opts_.speculative.draft_override(i, *s.fed, s.pending, s.drafts);
          if (s.drafts.size() > n) s.drafts.resize(n);
          for (size_t k = 0; k < s.drafts.size(); ++k) s.q[k] = {{s.drafts[k], 1.0}};
        }
      draft_s = std::chrono::duration<double>(Clock::now() - d0).count();
      spec.draft_s += draft_s;
    }

    const double dt = forward_s + draft_s;
    ++stats_.steps;
    if (n_prompt_entries > 0) {
      stats_.prefill_s += dt;
      stats_.prefill_tokens += n_prompt_entries;
    } else {
      stats_.decode_s += dt;
      stats_.decode_tokens += generated;
    }
  }
  return results;
}

}  // namespace dsv3
