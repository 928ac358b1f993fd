#include "backends/cpu/cpu_backend.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>

#include "backends/cpu/gemm.h"
#include "backends/cpu/kernels.h"
#include "base/error.h"
#include "model/scratch.h"

namespace dsv3 {

CpuBackend::CpuBackend(ThreadPool& pool) : pool_(pool), scratch_(size_t(pool.size())) {
  // We parallelise over our own pool; OpenBLAS's threads would oversubscribe the cores.
  openblas_set_num_threads(1);
}

float* CpuBackend::thread_scratch(int t, int64_t count) { return grow(scratch_[size_t(t)], count); }

void CpuBackend::reserve_thread_scratch(int64_t count) {
  for (auto& s : scratch_) grow(s, count);
}

void CpuBackend::rms_norm(const float* x, int64_t n, const Weight& w, float eps, float* out) {
  // The reference's arithmetic, with the weight row converted once into step scratch (the
  // reference allocates it) and the tokens of a prompt spread over the threads (it was ~2-3% of
  // a 512-token prefill on one thread).
  const int64_t d = w.cols;
  float* g = grow(norm_w_, d);
  ref::dequant_row(w, 0, g);
  auto run = [&](int64_t b, int64_t e) { ref::rms_norm_rows(x + b * d, e - b, d, g, eps, out + b * d); };
  if (n < kGemmMinTokens) return run(0, n);
  pool_.parallel_for(n, run);
}

void CpuBackend::add(float* y, const float* x, int64_t count) {
  for (int64_t i = 0; i < count; ++i) y[i] += x[i];
}

void CpuBackend::linear_rows(int t, size_t job, int64_t r0, int64_t r1) {
  const LinearJob& j = run_jobs_[job];
  const Weight& w = *j.w;
  if (r0 >= r1 || j.n == 0) return;
  float* y = j.y + (r0 - j.row_begin);
  if (j.n < kGemmMinTokens) return cpu::matvec_rows(w, r0, r1, j.x, j.n, j.x_stride, y, j.y_stride);
  cpu::gemm_rows(w, r0, r1, packed_[job], unscale_[job], j.n, y, j.y_stride,
                 thread_scratch(t, cpu::gemm_scratch_floats(w)));
}

void CpuBackend::normalize_jobs(std::span<const LinearJob> jobs) {
  run_jobs_.assign(jobs.begin(), jobs.end());
  for (auto& j : run_jobs_) {
    if (j.x_stride == 0) j.x_stride = j.w->cols;
    if (j.row_end < 0) j.row_end = j.w->rows;
    if (j.y_stride == 0) j.y_stride = j.row_end - j.row_begin;
  }
}

void CpuBackend::linear_jobs(std::span<const LinearJob> jobs) {
  // Chunks of rows handed out dynamically (ThreadPool::for_chunks), about 8 per thread so that a
  // thread slowed by other work on its core leaves its share to the others; a many-token chunk
  // is one dequantised tile. How rows are split never changes a row's sums (dot_order-inl.h).
  normalize_jobs(jobs);
  int64_t total = 0;
  for (const auto& j : run_jobs_) total += (j.row_end - j.row_begin) * j.w->cols;
  const int64_t target = std::max<int64_t>(total / (int64_t(pool_.size()) * 8), int64_t(1) << 15);
  pack_jobs();
  for (const auto& j : run_jobs_)
    if (j.n >= kGemmMinTokens) reserve_thread_scratch(cpu::gemm_scratch_floats(*j.w));
  chunks_.clear();
  for (size_t ij = 0; ij < run_jobs_.size(); ++ij) {
    const auto& j = run_jobs_[ij];
    if (j.n == 0) continue;
    const int64_t step = j.n >= kGemmMinTokens ? cpu::gemm_tile_rows(*j.w)
                                               : std::max<int64_t>(16, (target / j.w->cols + 15) / 16 * 16);
    for (int64_t r = j.row_begin; r < j.row_end; r += step)
      chunks_.push_back({int32_t(ij), r, std::min(j.row_end, r + step)});
  }
  pool_.for_chunks(int64_t(chunks_.size()), [&](int64_t c, int t) {
    const RowChunk& ch = chunks_[size_t(c)];
    linear_rows(t, size_t(ch.job), ch.r0, ch.r1);
  });
}

void CpuBackend::pack_jobs() {
  // Each many-token job's x in the panels of gemm.h, once (jobs that share their x and the
  // weight's layout, like gate_proj and up_proj, share the packing), the panels split over the
  // threads.
  const auto& jobs = run_jobs_;
  packed_.assign(jobs.size(), nullptr);
  unscale_.assign(jobs.size(), nullptr);
  pack_offset_.assign(jobs.size() + 1, 0);
  unscale_offset_.assign(jobs.size() + 1, 0);
  auto shares_previous = [&](size_t ij) {
    if (ij == 0) return false;
    const LinearJob &a = jobs[ij - 1], &b = jobs[ij];
    return a.x == b.x && a.n == b.n && a.x_stride == b.x_stride && a.w->cols == b.w->cols && a.w->dtype == b.w->dtype;
  };
  for (size_t ij = 0; ij < jobs.size(); ++ij) {
    const auto& j = jobs[ij];
    const bool own = j.n >= kGemmMinTokens && !shares_previous(ij);
    pack_offset_[ij + 1] = pack_offset_[ij] + (own ? cpu::gemm_packed_floats(*j.w, j.n) : 0);
    unscale_offset_[ij + 1] = unscale_offset_[ij] + (own ? cpu::gemm_unscale_count(*j.w, j.n) : 0);
  }
  if (pack_offset_.back() == 0) return;
  float* xp = grow(xp_, pack_offset_.back());
  double* us = grow(xp_unscale_, unscale_offset_.back());
  units_.clear();
  for (size_t ij = 0; ij < jobs.size(); ++ij) {
    const auto& j = jobs[ij];
    if (j.n < kGemmMinTokens) continue;
    if (pack_offset_[ij + 1] == pack_offset_[ij]) {  // shares the previous job's packing
      packed_[ij] = packed_[ij - 1];
      unscale_[ij] = unscale_[ij - 1];
      continue;
    }
    packed_[ij] = xp + pack_offset_[ij];
    unscale_[ij] = us + unscale_offset_[ij];
    for (int64_t p = 0; p < cpu::gemm_panels(j.n); ++p) units_.push_back({int32_t(ij), p, p + 1});
  }
  pool_.for_chunks(int64_t(units_.size()), [&](int64_t c, int) {
    const RowChunk& u = units_[size_t(c)];
    const auto& j = jobs[size_t(u.job)];
    cpu::gemm_pack(*j.w, j.x, j.n, j.x_stride, u.r0, u.r1, packed_[size_t(u.job)], unscale_[size_t(u.job)]);
  });
}

void CpuBackend::linear(const Weight& w, const float* x, int64_t n, float* y) {
  const LinearJob job{&w, x, n, y};
  linear_jobs({&job, 1});
}

void CpuBackend::swiglu(float* g, const float* u, int64_t count) {
  auto run = [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) g[i] = ref::silu(g[i]) * u[i];
  };
  if (count < (int64_t(1) << 16)) return run(0, count);  // a decode step's few thousand values
  pool_.parallel_for(count, run);
}

void CpuBackend::mlp(const MlpWeights& w, const float* x, int64_t n, float* out) {
  const int64_t inter = w.gate_proj.rows;
  float* g = grow(g_, n * inter);
  float* u = grow(u_, n * inter);
  const LinearJob gate_up[] = {{&w.gate_proj, x, n, g}, {&w.up_proj, x, n, u}};
  linear_jobs(gate_up);
  swiglu(g, u, n * inter);
  linear(w.down_proj, g, n, out);
}

}  // namespace dsv3
