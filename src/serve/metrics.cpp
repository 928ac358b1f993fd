#include "serve/metrics.h"

#include <fmt/format.h>

#include <algorithm>

namespace dsv3::serve {

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  const size_t b = size_t(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  ++counts_[b];
  sum_ += v;
  ++count_;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& labels) const {
  uint64_t cum = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cum += counts_[i];
    out += fmt::format("{}_bucket{{{},le=\"{}\"}} {}\n", name, labels, bounds_[i], cum);
  }
  cum += counts_.back();
  out += fmt::format("{}_bucket{{{},le=\"+Inf\"}} {}\n", name, labels, cum);
  out += fmt::format("{}_sum{{{}}} {}\n", name, labels, sum_);
  out += fmt::format("{}_count{{{}}} {}\n", name, labels, count_);
}

namespace {
// vLLM's bucket bounds (seconds) for these histograms.
std::vector<double> ttft_buckets() {
  return {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
          160.0, 640.0, 2560.0};
}
std::vector<double> itl_buckets() {
  return {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0};
}
std::vector<double> e2e_buckets() {
  return {0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0,
          960.0, 1920.0, 7680.0};
}

std::string escape_label(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '\\' || c == '"') o += '\\';
    if (c == '\n') {
      o += "\\n";
      continue;
    }
    o += c;
  }
  return o;
}
}  // namespace

Metrics::Metrics(std::string model_name)
    : labels_("model_name=\"" + escape_label(model_name) + "\""),
      ttft_(ttft_buckets()),
      itl_(itl_buckets()),
      e2e_(e2e_buckets()),
      queue_(e2e_buckets()) {}

void Metrics::observe_ttft(double s) {
  std::lock_guard lock(mu_);
  ttft_.observe(s);
}
void Metrics::observe_itl(double s) {
  std::lock_guard lock(mu_);
  itl_.observe(s);
}
void Metrics::observe_e2e(double s) {
  std::lock_guard lock(mu_);
  e2e_.observe(s);
}
void Metrics::observe_queue_time(double s) {
  std::lock_guard lock(mu_);
  queue_.observe(s);
}

void Metrics::request_finished(const std::string& reason, int64_t prompt_tokens, int64_t generation_tokens) {
  std::lock_guard lock(mu_);
  ++finished_[reason];
  prompt_tokens_ += uint64_t(prompt_tokens);
  generation_tokens_ += uint64_t(generation_tokens);
}

void Metrics::request_rejected(const std::string& reason) {
  std::lock_guard lock(mu_);
  ++rejected_[reason];
}

std::string Metrics::render(const SchedulerStats& s) const {
  std::lock_guard lock(mu_);
  std::string o;
  const std::string& L = labels_;
  auto gauge = [&](const char* name, const char* help, double v) {
    o += fmt::format("# HELP {} {}\n# TYPE {} gauge\n{}{{{}}} {}\n", name, help, name, name, L, v);
  };
  auto counter = [&](const char* name, const char* help, double v) {
    o += fmt::format("# HELP {} {}\n# TYPE {} counter\n{}{{{}}} {}\n", name, help, name, name, L, v);
  };
  gauge("dsv3:num_requests_running", "Number of requests in the running batch.", double(s.running));
  gauge("dsv3:num_requests_waiting", "Number of requests waiting to be scheduled.", double(s.waiting));
  // vLLM's meaning: the fraction of the KV cache's blocks held by running sequences (blocks kept
  // only for prefix reuse are free to take, so they do not count).
  const double usage = s.kv_blocks_total > 0 && s.cache_capacity_tokens == s.kv_blocks_total * s.kv_block_size
                           ? double(s.kv_blocks_used) / double(s.kv_blocks_total)
                       : s.cache_capacity_tokens > 0 ? double(s.cache_tokens) / double(s.cache_capacity_tokens)
                                                     : 0.0;
  gauge("dsv3:kv_cache_usage_perc", "Fraction of the KV cache pool's blocks held by running sequences; 1 = full.",
        usage);
  gauge("dsv3:kv_cache_tokens", "Positions held in the running sequences' latent caches.", double(s.cache_tokens));
  gauge("dsv3:kv_cache_blocks_total", "Blocks in the KV cache pool.", double(s.kv_blocks_total));
  gauge("dsv3:kv_cache_blocks_used", "Pool blocks held by running sequences.", double(s.kv_blocks_used));
  gauge("dsv3:kv_cache_blocks_cached", "Unreferenced pool blocks kept for prefix reuse (evicted when needed).",
        double(s.kv_blocks_cached));
  gauge("dsv3:kv_cache_block_size", "Positions per KV cache block.", double(s.kv_block_size));
  counter("dsv3:prefix_cache_queries", "Prompt tokens looked up in the prefix cache.",
          double(s.prefix_cache_queries_total));
  counter("dsv3:prefix_cache_hits", "Prompt tokens found in the prefix cache (not prefilled).",
          double(s.prefix_cache_hits_total));
  counter("dsv3:num_preemptions_total", "Requests preempted (their blocks freed, recomputed later) for lack of blocks.",
          double(s.preemptions_total));
  counter("dsv3:spec_decode_num_drafts_total", "Verify steps that carried MTP drafts (one per sequence and step).",
          double(s.spec_num_drafts_total));
  counter("dsv3:spec_decode_num_draft_tokens_total", "Draft tokens proposed by the MTP module and verified.",
          double(s.spec_draft_tokens_total));
  counter("dsv3:spec_decode_num_accepted_tokens_total", "Draft tokens accepted.", double(s.spec_accepted_tokens_total));
  if (!s.spec_accepted_per_pos.empty()) {
    o += "# HELP dsv3:spec_decode_num_accepted_tokens_per_pos_total Draft tokens accepted, by draft position (0 = "
         "first).\n# TYPE dsv3:spec_decode_num_accepted_tokens_per_pos_total counter\n";
    for (size_t k = 0; k < s.spec_accepted_per_pos.size(); ++k)
      o += fmt::format("dsv3:spec_decode_num_accepted_tokens_per_pos_total{{{},position=\"{}\"}} {}\n", L, k,
                       s.spec_accepted_per_pos[k]);
  }
  counter("dsv3:prompt_tokens_total", "Prefilled prompt tokens.", double(s.prompt_tokens_total));
  counter("dsv3:generation_tokens_total", "Generated tokens.", double(s.generation_tokens_total));
  counter("dsv3:iteration_tokens_total", "Entries (prompt + decode tokens) over all forward steps.",
          double(s.iteration_tokens_total));
  counter("dsv3:num_steps_total", "Forward steps run.", double(s.steps_total));
  o += "# HELP dsv3:request_success_total Finished requests by finish reason.\n# TYPE dsv3:request_success_total counter\n";
  for (const char* r : {"stop", "length", "tool_calls", "abort"}) {
    auto it = finished_.find(r);
    o += fmt::format("dsv3:request_success_total{{{},finished_reason=\"{}\"}} {}\n", L, r,
                     it == finished_.end() ? 0 : it->second);
  }
  o += "# HELP dsv3:request_rejected_total Requests refused before running, by reason.\n"
       "# TYPE dsv3:request_rejected_total counter\n";
  for (const char* r : {"queue_full", "draining", "loading", "context_length"}) {
    auto it = rejected_.find(r);
    o += fmt::format("dsv3:request_rejected_total{{{},reason=\"{}\"}} {}\n", L, r,
                     it == rejected_.end() ? 0 : it->second);
  }
  o += "# HELP dsv3:request_prompt_tokens_sum Prompt tokens of finished requests.\n";
  o += fmt::format("# TYPE dsv3:request_prompt_tokens_sum counter\ndsv3:request_prompt_tokens_sum{{{}}} {}\n", L,
                   prompt_tokens_);
  o += "# HELP dsv3:request_generation_tokens_sum Generated tokens of finished requests.\n";
  o += fmt::format("# TYPE dsv3:request_generation_tokens_sum counter\ndsv3:request_generation_tokens_sum{{{}}} {}\n",
                   L, generation_tokens_);
  auto hist = [&](const Histogram& h, const char* name, const char* help) {
    o += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
    h.render(o, name, L);
  };
  hist(ttft_, "dsv3:time_to_first_token_seconds", "Time from arrival to the first generated token.");
  hist(itl_, "dsv3:inter_token_latency_seconds", "Time between consecutive tokens of a choice.");
  hist(e2e_, "dsv3:e2e_request_latency_seconds", "Time from arrival to the last token of a request.");
  hist(queue_, "dsv3:request_queue_time_seconds", "Time from arrival to the first step that ran the request.");
  return o;
}

}  // namespace dsv3::serve
