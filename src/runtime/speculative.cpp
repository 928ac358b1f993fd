#include "runtime/speculative.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "base/error.h"

namespace dsv3 {

double SpeculativeStats::accept_rate(size_t k) const {
  return k < drafted.size() && drafted[k] > 0 ? double(accepted[k]) / double(drafted[k]) : 0.0;
}

double SpeculativeStats::accept_rate() const {
  int64_t d = 0, a = 0;
  for (size_t k = 0; k < drafted.size(); ++k) d += drafted[k], a += accepted[k];
  return d > 0 ? double(a) / double(d) : 0.0;
}

void SpeculativeStats::add(const SpeculativeStats& o) {
  if (drafted.size() < o.drafted.size()) {
    drafted.resize(o.drafted.size());
    accepted.resize(o.drafted.size());
  }
  for (size_t k = 0; k < o.drafted.size(); ++k) drafted[k] += o.drafted[k], accepted[k] += o.accepted[k];
  rounds += o.rounds;
  emitted += o.emitted;
  turned_off += o.turned_off;
  draft_s += o.draft_s;
  verify_s += o.verify_s;
}

namespace {

double prob_of(std::span<const TokenProb> d, int32_t id) {
  for (const auto& t : d)
    if (t.id == id) return t.p;
  return 0.0;
}

}  // namespace

DraftVerdict verify_draft(Sampler& sampler, std::span<const float> target_logits, int32_t draft,
                          std::span<const TokenProb> q, std::vector<TokenProb>& p) {
  if (sampler.params().temperature <= 0) {
    const int32_t best = argmax(target_logits);
    return {best == draft, best};
  }
  sampler.distribution(target_logits, p);
  const double pd = prob_of(p, draft), qd = prob_of(q, draft);
  // u < p/q, written without the division (qd > 0: the draft was drawn from q).
  if (pd > 0 && sampler.uniform() * qd < pd) return {true, draft};
  // The residual max(0, p - q), over p's support (where p is 0 it is 0), renormalised by draw().
  double mass = 0;
  for (auto& t : p) {
    t.p = std::max(0.0, t.p - prob_of(q, t.id));
    mass += t.p;
  }
  if (!(mass > 0)) {  // p <= q everywhere (equal up to rounding): p itself
    sampler.distribution(target_logits, p);
  } else {
    std::erase_if(p, [](const TokenProb& t) { return t.p <= 0; });
  }
  return {false, sampler.draw(p)};
}

void draft_with_mtp(Model& model, std::span<SequenceCache* const> caches, std::span<DraftJob> jobs, bool absorbed) {
  const int64_t H = model.config().hidden_size, V = model.config().vocab_size, L = model.config().num_hidden_layers;
  std::vector<StepEntry> entries;
  std::vector<int32_t> rows;
  std::vector<size_t> row_job;
  std::vector<float> in;
  for (size_t j = 0; j < jobs.size(); ++j) {
    DraftJob& job = jobs[j];
    job.drafts.clear();
    SequenceCache& c = *caches[size_t(job.seq)];
    if (c.length(L) < job.first_pos) {
      job.max_drafts = -1;
      continue;
    }
    c.truncate_layer(L, job.first_pos);
    for (size_t k = 0; k < job.next.size(); ++k)
      entries.push_back({job.seq, job.next[k], int32_t(job.first_pos + int64_t(k))});
    in.insert(in.end(), job.hidden, job.hidden + int64_t(job.next.size()) * H);
    if (job.max_drafts > 0 && !job.next.empty()) {
      rows.push_back(int32_t(entries.size() - 1));
      row_job.push_back(j);
    }
  }
  if (entries.empty()) return;
  std::vector<float> out(entries.size() * size_t(H)), logits(rows.size() * size_t(V));
  model.forward_mtp(entries, in.data(), caches, {.absorbed = absorbed, .logit_rows = rows},
                    rows.empty() ? nullptr : logits.data(), out.data());
  // The jobs drafting, each with its last MTP state and position.
  std::vector<size_t> live = row_job;
  std::vector<int32_t> pos;
  in.clear();
  for (size_t r = 0; r < rows.size(); ++r) {
    pos.push_back(entries[size_t(rows[r])].pos);
    in.insert(in.end(), out.begin() + int64_t(rows[r]) * H, out.begin() + int64_t(rows[r] + 1) * H);
  }
  while (!live.empty()) {
    // Draft k of every live job from the logits in `logits` (row r for live[r]).
    for (size_t r = 0; r < live.size(); ++r) {
      DraftJob& job = jobs[live[r]];
      job.q.resize(job.drafts.size() + 1);
      auto& q = job.q.back();
      job.sampler->distribution({logits.data() + r * size_t(V), size_t(V)}, q);
      job.drafts.push_back(job.sampler->params().temperature <= 0 ? q[0].id : job.sampler->draw(q));
    }
    std::vector<size_t> next_live;
    std::vector<int32_t> next_pos;
    std::vector<float> next_in;
    entries.clear();
    for (size_t r = 0; r < live.size(); ++r) {
      DraftJob& job = jobs[live[r]];
      if (int(job.drafts.size()) >= job.max_drafts) continue;
      entries.push_back({job.seq, job.drafts.back(), pos[r] + 1});
      next_in.insert(next_in.end(), in.begin() + int64_t(r) * H, in.begin() + int64_t(r + 1) * H);
      next_live.push_back(live[r]);
      next_pos.push_back(pos[r] + 1);
    }
    if (entries.empty()) break;
    out.resize(entries.size() * size_t(H));
    logits.resize(entries.size() * size_t(V));
    model.forward_mtp(entries, next_in.data(), caches, {.absorbed = absorbed}, logits.data(), out.data());
    live = std::move(next_live);
    pos = std::move(next_pos);
    in.assign(out.begin(), out.begin() + int64_t(live.size()) * H);
  }
}

namespace {

uint64_t bytes_of(const Weight& w) { return w.present() ? w.bytes() : 0; }
uint64_t bytes_of(const MlpWeights& m) { return bytes_of(m.gate_proj) + bytes_of(m.up_proj) + bytes_of(m.down_proj); }

// Non-expert bytes of a layer, and the mean bytes of one routed expert.
uint64_t layer_fixed_bytes(const LayerWeights& l) {
  const auto& a = l.self_attn;
  uint64_t n = bytes_of(l.input_layernorm) + bytes_of(l.post_attention_layernorm);
  for (const Weight* p : {&a.q_a_proj, &a.q_a_layernorm, &a.q_b_proj, &a.q_proj, &a.kv_a_proj_with_mqa,
                          &a.kv_a_layernorm, &a.kv_b_proj, &a.o_proj})
    n += bytes_of(*p);
  if (!l.is_moe) return n + bytes_of(l.mlp);
  n += bytes_of(l.moe.gate) + bytes_of(l.moe.e_score_correction_bias);
  if (l.moe.shared_experts) n += bytes_of(*l.moe.shared_experts);
  return n;
}

double mean_expert_bytes(const LayerWeights& l) {
  if (!l.is_moe || l.moe.experts.empty()) return 0;
  double n = 0;
  for (const auto& e : l.moe.experts) n += double(bytes_of(e));
  return n / double(l.moe.experts.size());
}

}  // namespace

SpeculationCost speculation_cost(const ModelWeights& w, const ModelConfig& c, int K) {
  SpeculationCost cost;
  const double E = double(c.n_routed_experts), k = double(c.num_experts_per_tok);
  // Expected distinct experts among t tokens' independent uniform choices of k of E.
  const auto distinct = [&](int t) { return E > 0 ? E * (1 - std::pow(1 - k / E, t)) : 0.0; };
  double fixed = double(bytes_of(w.norm) + bytes_of(w.lm_head)), experts_one = 0, experts_verify = 0;
  for (const auto& l : w.layers) {
    fixed += double(layer_fixed_bytes(l));
    const double eb = mean_expert_bytes(l);
    experts_one += eb * std::min(k, E);
    experts_verify += eb * distinct(K + 1);
  }
  cost.plain_bytes = fixed + experts_one;
  if (w.mtp) {
    const MtpWeights& m = *w.mtp;
    cost.draft_bytes = double(bytes_of(m.enorm) + bytes_of(m.hnorm) + bytes_of(m.eh_proj) +
                              bytes_of(m.shared_head_norm) + bytes_of(m.shared_head_head) +
                              layer_fixed_bytes(m.layer)) +
                       mean_expert_bytes(m.layer) * std::min(k, E);
  }
  cost.verify_bytes = fixed + experts_verify + double(K) * cost.draft_bytes;
  return cost;
}

double expected_tokens_per_step(std::span<const double> accept) {
  double total = 1, run = 1;
  for (double a : accept) {
    run *= a;
    total += run;
  }
  return total;
}

bool SpeculationGate::record(int tokens) {
  if (!on_) return false;
  total_ += tokens;
  ++steps_;
  // The mean so far plus a margin that shrinks as steps accumulate (about one standard deviation
  // of a step's yield, which is at most ~1 token): a sequence that yields nothing is stopped after
  // a few steps, one near the break-even keeps going until its mean says otherwise.
  const double mean = double(total_) / double(steps_);
  if (adaptive_ && steps_ >= warmup_ && mean + 1.0 / std::sqrt(double(steps_)) < break_even_) {
    on_ = false;
    return true;
  }
  return false;
}

}  // namespace dsv3
