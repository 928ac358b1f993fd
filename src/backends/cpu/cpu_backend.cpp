#include "backends/cpu/cpu_backend.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>

#include "backends/cpu/gemm.h"
#include "backends/cpu/kernels.h"
#include "base/error.h"
#include "model/scratch.h"

namespace dsv3 {

namespace {
// Rows per dequantised tile in the many-token path (gemm.h): a whole number of register blocks,
// about 2 MiB of f32: 1-2 MiB tiles prefilled bench-m's 512 tokens fastest here, 256 KiB ones
// ~10% slower. The row stride is padded (kernels.h padded_stride).
int64_t tile_rows(int64_t cols) {
  const int64_t rows = (int64_t(2) << 20) / (cols * 4) / cpu::kGemmRowBlock * cpu::kGemmRowBlock;
  return std::clamp<int64_t>(rows, cpu::kGemmRowBlock, 240);
}
}  // namespace

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

void CpuBackend::linear_rows(int t, const LinearJob& job, const float* packed, int64_t r0, int64_t r1) {
  const Weight& w = *job.w;
  if (r0 >= r1 || job.n == 0) return;
  if (job.n < kGemmMinTokens) {
    cpu::matvec_rows(w, r0, r1, job.x, job.n, w.cols, job.y + r0, w.rows);
    return;
  }
  const int64_t rows_per_tile = tile_rows(w.cols);
  const int64_t ld = cpu::padded_stride(w.cols);
  float* tile = thread_scratch(t, rows_per_tile * ld);
  for (int64_t r = r0; r < r1; r += rows_per_tile) {
    const int64_t tr = std::min(rows_per_tile, r1 - r);
    cpu::dequant_rows(w, r, r + tr, tile, ld);  // rows past tr are read by the kernel but unused
    cpu::gemm_tile(tile, ld, tr, packed, job.n, w.cols, job.y + r, w.rows);
  }
}

void CpuBackend::linear_jobs(std::span<const LinearJob> jobs) {
  // Chunks of rows handed out dynamically (ThreadPool::for_chunks), about 8 per thread so that a
  // thread slowed by other work on its core leaves its share to the others; a many-token chunk
  // is one dequantised tile.
  int64_t total = 0;
  for (const auto& j : jobs) total += j.w->rows * j.w->cols;
  const int64_t target = std::max<int64_t>(total / (int64_t(pool_.size()) * 8), int64_t(1) << 15);
  pack_jobs(jobs);
  for (const auto& j : jobs)
    if (j.n >= kGemmMinTokens) reserve_thread_scratch(tile_rows(j.w->cols) * cpu::padded_stride(j.w->cols));
  chunks_.clear();
  for (size_t ij = 0; ij < jobs.size(); ++ij) {
    const auto& j = jobs[ij];
    if (j.n == 0) continue;
    int64_t step = j.n >= kGemmMinTokens ? tile_rows(j.w->cols)
                                         : std::max<int64_t>(16, (target / j.w->cols + 15) / 16 * 16);
    for (int64_t r = 0; r < j.w->rows; r += step) chunks_.push_back({int32_t(ij), r, std::min(j.w->rows, r + step)});
  }
  pool_.for_chunks(int64_t(chunks_.size()), [&](int64_t c, int t) {
    const RowChunk& ch = chunks_[size_t(c)];
    linear_rows(t, jobs[size_t(ch.job)], packed_[size_t(ch.job)], ch.r0, ch.r1);
  });
}

void CpuBackend::pack_jobs(std::span<const LinearJob> jobs) {
  // Each many-token job's x in the token panels of gemm.h, once (jobs that share their x, like
  // gate_proj and up_proj, share the packing), the panels split over the threads.
  packed_.assign(jobs.size(), nullptr);
  std::vector<int64_t>& offset = pack_offset_;
  offset.assign(jobs.size() + 1, 0);
  for (size_t ij = 0; ij < jobs.size(); ++ij) {
    const auto& j = jobs[ij];
    const bool shares = ij > 0 && jobs[ij - 1].x == j.x && jobs[ij - 1].n == j.n && jobs[ij - 1].w->cols == j.w->cols;
    const bool own = j.n >= kGemmMinTokens && !shares;
    offset[ij + 1] = offset[ij] + (own ? cpu::gemm_packed_floats(j.n, j.w->cols) : 0);
  }
  if (offset.back() == 0) return;
  float* xp = grow(xp_, offset.back());
  units_.clear();
  for (size_t ij = 0; ij < jobs.size(); ++ij) {
    const auto& j = jobs[ij];
    if (j.n < kGemmMinTokens) continue;
    if (offset[ij + 1] == offset[ij]) {  // shares the previous job's packing
      packed_[ij] = packed_[ij - 1];
      continue;
    }
    packed_[ij] = xp + offset[ij];
    for (int64_t p = 0; p < cpu::gemm_panels(j.n); ++p) units_.push_back({int32_t(ij), p, p + 1});
  }
  pool_.for_chunks(int64_t(units_.size()), [&](int64_t c, int) {
    const RowChunk& u = units_[size_t(c)];
    const auto& j = jobs[size_t(u.job)];
    cpu::gemm_pack_panels(j.x, j.n, j.w->cols, u.r0, u.r1, packed_[size_t(u.job)]);
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
