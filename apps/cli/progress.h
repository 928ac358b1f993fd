// A one-line progress meter on stderr for long jobs (loading, cast, quantize): bytes, items and
// an ETA, redrawn at most a few times a second and only once the job has run for more than
// `delay_s` (fast jobs print nothing). Silent when `quiet`.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace dsv3::cli {

class ProgressLine {
 public:
  ProgressLine(std::string label, bool quiet, double delay_s = 1.0);
  ~ProgressLine();

  // `what` is a short note (a shard name); items are tensors.
  void update(uint64_t bytes_done, uint64_t bytes_total, int64_t items_done, int64_t items_total,
              const std::string& what = "");
  // Ends the line (if one was drawn) and prints `summary` with the elapsed time; with
  // `only_if_slow`, only when the job took longer than the delay.
  void finish(const std::string& summary = "", bool only_if_slow = false);

 private:
  using Clock = std::chrono::steady_clock;
  std::string label_;
  bool quiet_, tty_;
  double delay_s_;
  Clock::time_point start_, last_draw_;
  bool drawn_ = false, finished_ = false;
};

std::string format_bytes(uint64_t bytes);

}  // namespace dsv3::cli
