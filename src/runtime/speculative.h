// MTP speculative decoding: the pieces shared by the engine (chat, generate, bench) and the
// scheduler (serve). Each step a sequence feeds its sampled token plus K drafts that the MTP
// module (layer num_hidden_layers) proposed; one Model::forward verifies them all; the longest
// accepted prefix and one token of the target's own are kept, the rejected positions are rolled
// back. Sources: DeepSeek-V3 technical report §2.2 (the MTP module; "can be repurposed for
// speculative decoding") and §5.4.3 (85-90% acceptance of the second token); Leviathan et al.
// 2023 and Chen et al. 2023 (the acceptance rule that keeps the output distribution exact).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "model/model.h"
#include "runtime/sampler.h"

namespace dsv3 {

struct SpeculativeOptions {
  // Drafts per step and sequence (0 = off). K > 1 chains the single MTP module on its own output
  // (its block output, before shared_head.norm, is the next draft's hidden state), as SGLang and
  // vLLM do.
  int draft_tokens = 0;
  // Turn speculation off for a sequence whose tokens per verify step stay below the break-even
  // point of the cost model (speculation_cost) after warm-up: random weights accept almost nothing.
  bool adaptive = true;
  // Tests: called after each drafting with (request index, tokens in the cache, the token fed
  // next, the drafts) and may replace the drafts (as many or fewer); a replaced draft counts as
  // proposed with certainty (q = 1 on it), which the acceptance rule handles exactly too.
  std::function<void(size_t, std::span<const int32_t>, int32_t, std::vector<int32_t>&)> draft_override;
};

struct SpeculativeStats {
  std::vector<int64_t> drafted, accepted;  // [K]: drafts proposed / accepted at each draft position
  int64_t rounds = 0;                      // verify steps, counted per sequence
  int64_t emitted = 0;                     // tokens those steps produced (accepted drafts + one of the target's)
  int64_t turned_off = 0;                  // sequences whose speculation the adaptive rule stopped
  double draft_s = 0;                      // wall time of the MTP drafting calls
  double verify_s = 0;                     // wall time of the forward steps that carried drafts
  double accept_rate(size_t k) const;      // accepted[k] / drafted[k] (0 when nothing was drafted)
  double accept_rate() const;              // over every draft position
  double mean_accepted_tokens() const { return rounds ? double(emitted) / double(rounds) : 0.0; }
  void add(const SpeculativeStats& o);
};

// A draft against the target's logits. Sampling: accept with probability min(1, p(d) / q(d)),
// otherwise draw from normalise(max(0, p - q)), where p and q are the target's and the draft's
// distributions after the same temperature / top-k / top-p / min-p processing
// (Sampler::distribution): the emitted token is then distributed exactly as p. Greedy
// (temperature 0): accept iff the draft is the target's argmax, otherwise the argmax.
// `q` is the distribution the draft was drawn from; draws from the sampler's RNG.
struct DraftVerdict {
  bool accepted = false;
  int32_t token = 0;  // the draft when accepted, else the replacement
};
DraftVerdict verify_draft(Sampler& sampler, std::span<const float> target_logits, int32_t draft,
                          std::span<const TokenProb> q, std::vector<TokenProb>& scratch);

// One sequence's part of a drafting pass (draft_with_mtp).
struct DraftJob {
  int32_t seq = 0;          // index into the caches span
  int64_t first_pos = 0;    // first position the verify/prefill step computed for it
  std::vector<int32_t> next;  // tokens at first_pos + 1 .. fed: MTP row j pairs state j with token j + 1
  const float* hidden = nullptr;  // [next.size(), hidden_size]: the main model's states at first_pos ..
  Sampler* sampler = nullptr;
  int max_drafts = 0;       // 0: only the MTP rows (a prompt chunk, or no room left to generate)
  // Out: the drafts and the distributions they were drawn from (greedy: the argmax, q = 1).
  std::vector<int32_t> drafts;
  std::vector<std::vector<TokenProb>> q;
};

// The MTP rows of every position the last step computed, then up to max_drafts drafts per job,
// for all jobs together: one forward_mtp call over the rows (logits only for the last row of the
// jobs that draft), then one call per further draft over the jobs still drafting, each fed its
// own last draft and the previous call's hidden_out row. Each job's MTP layer is first rolled back
// to first_pos (chained rows of the previous pass are speculative). Jobs whose MTP layer holds
// fewer than first_pos rows cannot draft: their max_drafts is set to -1 and nothing runs for them.
void draft_with_mtp(Model& model, std::span<SequenceCache* const> caches, std::span<DraftJob> jobs, bool absorbed);

// Weights read per decode step, in bytes (memory-bound CPU decode costs about its bytes).
// plain: one token through the main model. verify: 1 + K tokens in one step (dense weights once,
// the expected union of the routed experts the K + 1 tokens choose, taken as independent
// uniform choices: E (1 - (1 - k/E)^(K+1)) per MoE layer), plus K MTP drafting calls (the MTP
// layer with k experts, eh_proj, its head). Embedding rows and the latent cache are not counted.
struct SpeculationCost {
  double plain_bytes = 0, verify_bytes = 0, draft_bytes = 0;  // draft_bytes: one MTP call (in verify_bytes K times)
  // Tokens a verify step must yield to match plain decoding's tokens per byte.
  double break_even_tokens() const { return plain_bytes > 0 ? verify_bytes / plain_bytes : 0.0; }
  double predicted_speedup(double tokens_per_step) const {
    return verify_bytes > 0 ? tokens_per_step * plain_bytes / verify_bytes : 0.0;
  }
};
SpeculationCost speculation_cost(const ModelWeights& w, const ModelConfig& c, int draft_tokens);

// Tokens per verify step from per-position acceptance rates (a[k] = P(draft k accepted | drafts
// before it accepted)): 1 + a0 + a0 a1 + ...
double expected_tokens_per_step(std::span<const double> accept);

// Per sequence: the mean tokens its verify steps yield; off (adaptive) once, after `warmup` steps,
// the mean plus 1/sqrt(steps) falls below break_even, and off for the rest of the request.
// Adaptive with max_tokens (K + 1, every draft accepted) at or below break_even: off from the
// start (speculation cannot pay on these shapes).
class SpeculationGate {
 public:
  SpeculationGate() = default;
  SpeculationGate(double break_even, bool adaptive, int max_tokens = 0, int warmup = 3)
      : break_even_(break_even), adaptive_(adaptive), warmup_(warmup), on_(!(adaptive && max_tokens > 0 && max_tokens <= break_even)) {}
  bool on() const { return on_; }
  // After a verify step that yielded `tokens` (accepted drafts + 1). Returns true when this call
  // turned speculation off.
  bool record(int tokens);
  void turn_off() { on_ = false; }

 private:
  double break_even_ = 0;
  bool adaptive_ = true;
  int warmup_ = 3;
  int64_t steps_ = 0, total_ = 0;
  bool on_ = true;
};

}  // namespace dsv3
