#include "apps/cli/progress.h"

#include <unistd.h>

#include <cstdio>

#include <fmt/format.h>

namespace dsv3::cli {

std::string format_bytes(uint64_t bytes) {
  const double b = double(bytes);
  if (b >= 1e9) return fmt::format("{:.2f} GB", b / 1e9);
  if (b >= 1e6) return fmt::format("{:.1f} MB", b / 1e6);
  if (b >= 1e3) return fmt::format("{:.1f} kB", b / 1e3);
  return fmt::format("{} B", bytes);
}

ProgressLine::ProgressLine(std::string label, bool quiet, double delay_s)
    : label_(std::move(label)),
      quiet_(quiet),
      tty_(isatty(STDERR_FILENO)),
      delay_s_(delay_s),
      start_(Clock::now()),
      last_draw_(start_) {}

ProgressLine::~ProgressLine() { finish(); }

void ProgressLine::update(uint64_t bytes_done, uint64_t bytes_total, int64_t items_done, int64_t items_total,
                          const std::string& what) {
  if (quiet_ || finished_ || !tty_) return;  // a log file gets the summary only
  const auto now = Clock::now();
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  if (elapsed < delay_s_) return;
  if (drawn_ && std::chrono::duration<double>(now - last_draw_).count() < 0.2 && bytes_done < bytes_total) return;
  last_draw_ = now;
  const double frac = bytes_total ? double(bytes_done) / double(bytes_total) : 1.0;
  std::string eta = "--";
  if (frac > 0.001) {
    const int s = int(elapsed / frac - elapsed + 0.5);
    eta = s >= 3600 ? fmt::format("{}h{:02}m", s / 3600, s / 60 % 60) : fmt::format("{}m{:02}s", s / 60, s % 60);
  }
  std::fprintf(stderr, "\r\033[K%s: %s / %s (%3.0f%%), %lld / %lld tensors, %.1f GB/s, ETA %s%s%s", label_.c_str(),
               format_bytes(bytes_done).c_str(), format_bytes(bytes_total).c_str(), frac * 100,
               (long long)items_done, (long long)items_total, double(bytes_done) / 1e9 / elapsed, eta.c_str(),
               what.empty() ? "" : "  ", what.c_str());
  std::fflush(stderr);
  drawn_ = true;
}

void ProgressLine::finish(const std::string& summary, bool only_if_slow) {
  if (finished_) return;
  finished_ = true;
  if (quiet_) return;
  if (drawn_) std::fprintf(stderr, "\r\033[K");
  const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
  if (!summary.empty() && (!only_if_slow || elapsed >= delay_s_))
    std::fprintf(stderr, "%s: %s (%.1f s)\n", label_.c_str(), summary.c_str(), elapsed);
}

}  // namespace dsv3::cli
