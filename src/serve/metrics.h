// Prometheus metrics with vLLM's names and meanings under the `dsv3:` prefix (vLLM docs
// "usage/metrics"; SERVER.md §3.5): counters of tokens and requests, histograms in seconds of
// time to first token, inter-token latency and end-to-end latency, queue time, gauges of
// running/waiting requests and cache usage, plus requests rejected at admission (by reason).
// Thread-safe: handlers record from any thread; render() reads a consistent snapshot.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "runtime/scheduler.h"

namespace dsv3::serve {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  // Appends `name_bucket`, `name_sum`, `name_count` lines with `labels` ("model_name=\"x\"").
  void render(std::string& out, const std::string& name, const std::string& labels) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket (not cumulative); last = +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

class Metrics {
 public:
  explicit Metrics(std::string model_name);

  void observe_ttft(double s);
  void observe_itl(double s);
  void observe_e2e(double s);
  void observe_queue_time(double s);
  // A request that ended: `reason` is its finish_reason ("stop", "length", "tool_calls", "abort").
  void request_finished(const std::string& reason, int64_t prompt_tokens, int64_t generation_tokens);
  // A request refused at admission: "queue_full", "draining", "loading", "context_length".
  void request_rejected(const std::string& reason);

  // The /metrics page (Prometheus text exposition format 0.0.4).
  std::string render(const SchedulerStats& s) const;

 private:
  std::string labels_;
  mutable std::mutex mu_;
  Histogram ttft_, itl_, e2e_, queue_;
  std::map<std::string, uint64_t> finished_, rejected_;
  uint64_t prompt_tokens_ = 0, generation_tokens_ = 0;
};

}  // namespace dsv3::serve
