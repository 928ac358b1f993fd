#include "runtime/greedy.h"

#include "base/error.h"

namespace dsv3 {

int32_t argmax(const float* v, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (v[i] > v[best]) best = i;
  return int32_t(best);
}

GreedyRun run_greedy(Model& model, const std::vector<int32_t>& prompt, const GreedyOptions& opts) {
  if (prompt.empty()) fail("the prompt is empty; give at least one token id");
  const ModelConfig& c = model.config();
  const int64_t L = int64_t(prompt.size()), V = c.vocab_size, H = c.hidden_size;
  if (opts.mtp && !model.has_mtp()) fail("this checkpoint has no MTP layer (layer {})", c.num_hidden_layers);
  GreedyRun run;
  SequenceCache cache = model.new_cache(L + opts.decode_steps + 1, opts.cache_dtype);
  SequenceCache* caches[] = {&cache};

  std::vector<StepEntry> entries;
  for (int64_t i = 0; i < L; ++i) entries.push_back({0, prompt[size_t(i)], int32_t(i)});
  run.logits.resize(size_t((opts.decode_steps + 1) * V));
  run.prefill_hidden.resize(size_t(L * H));
  const int32_t last[] = {int32_t(L - 1)};
  model.forward(entries, caches, {.absorbed = opts.absorbed, .logit_rows = last, .trace = opts.trace},
                run.prefill_hidden.data(), run.logits.data());
  run.tokens.push_back(argmax(run.logits.data(), V));

  if (opts.mtp && L > 1) {
    // MTP row i combines the hidden state at position i with the embedding of token i+1.
    std::vector<StepEntry> mtp_entries;
    for (int64_t i = 0; i + 1 < L; ++i) mtp_entries.push_back({0, prompt[size_t(i + 1)], int32_t(i)});
    run.mtp_logits.resize(size_t((L - 1) * V));
    model.forward_mtp(mtp_entries, run.prefill_hidden.data(), caches, {.absorbed = opts.absorbed, .trace = opts.trace},
                      run.mtp_logits.data());
  }

  std::vector<float> hidden(static_cast<size_t>(H));
  const int32_t row0[] = {0};
  for (int64_t k = 1; k <= opts.decode_steps; ++k) {
    const StepEntry e{0, run.tokens.back(), int32_t(L + k - 1)};
    model.forward({&e, 1}, caches, {.absorbed = opts.absorbed, .logit_rows = row0, .trace = opts.trace},
                  hidden.data(), run.logits.data() + k * V);
    run.tokens.push_back(argmax(run.logits.data() + k * V, V));
  }
  return run;
}

}  // namespace dsv3
