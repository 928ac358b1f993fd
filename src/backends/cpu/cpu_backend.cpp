#include "backends/cpu/cpu_backend.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>

#include "backends/cpu/kernels.h"
#include "base/error.h"
#include "model/scratch.h"

namespace dsv3 {

namespace {
// Rows per dequantised tile in the sgemm path: 64 x cols f32 stays in L2 for cols up to ~4096.
constexpr int64_t kTileRows = 64;
}  // namespace

CpuBackend::CpuBackend(ThreadPool& pool) : pool_(pool), scratch_(size_t(pool.size())) {
  // We parallelise over our own pool; OpenBLAS's threads would oversubscribe the cores.
  openblas_set_num_threads(1);
}

float* CpuBackend::thread_scratch(int t, int64_t count) { return grow(scratch_[size_t(t)], count); }

void CpuBackend::rms_norm(const float* x, int64_t n, const Weight& w, float eps, float* out) {
  const int64_t d = w.cols;
  for (int64_t i = 0; i < n; ++i) {
    double ss = 0;
    for (int64_t c = 0; c < d; ++c) ss += double(x[i * d + c]) * x[i * d + c];
    const float r = float(1.0 / std::sqrt(ss / double(d) + double(eps)));
    for (int64_t c = 0; c < d; ++c) out[i * d + c] = x[i * d + c] * r * weight_at(w, 0, c);
  }
}

void CpuBackend::add(float* y, const float* x, int64_t count) {
  for (int64_t i = 0; i < count; ++i) y[i] += x[i];
}

void CpuBackend::linear_rows(int t, const LinearJob& job, int64_t r0, int64_t r1) {
  const Weight& w = *job.w;
  if (r0 >= r1 || job.n == 0) return;
  if (job.n < kGemmMinTokens) {
    cpu::matvec_rows(w, r0, r1, job.x, job.n, w.cols, job.y + r0, w.rows);
    return;
  }
  float* tile = thread_scratch(t, kTileRows * w.cols);
  for (int64_t r = r0; r < r1; r += kTileRows) {
    const int64_t tr = std::min(kTileRows, r1 - r);
    cpu::dequant_rows(w, r, r + tr, tile);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(job.n), int(tr), int(w.cols), 1.0f, job.x, int(w.cols),
                tile, int(w.cols), 0.0f, job.y + r, int(w.rows));
  }
}

void CpuBackend::linear_jobs(std::span<const LinearJob> jobs) {
  int64_t total = 0;
  for (const auto& j : jobs) total += j.w->rows * j.w->cols;
  const int T = pool_.size();
  pool_.run([&](int t) {
    // This thread's share [lo, hi) of the concatenated rows x cols; rows whose start falls in it.
    const int64_t lo = total * t / T, hi = total * (t + 1) / T;
    int64_t off = 0;
    for (const auto& j : jobs) {
      const int64_t size = j.w->rows * j.w->cols, cols = j.w->cols;
      const int64_t a = std::clamp(lo - off, int64_t(0), size), b = std::clamp(hi - off, int64_t(0), size);
      linear_rows(t, j, (a + cols - 1) / cols, (b + cols - 1) / cols);
      off += size;
    }
  });
}

void CpuBackend::linear(const Weight& w, const float* x, int64_t n, float* y) {
  const LinearJob job{&w, x, n, y};
  linear_jobs({&job, 1});
}

void CpuBackend::swiglu(float* g, const float* u, int64_t count) {
  pool_.parallel_for(count, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) g[i] = ref::silu(g[i]) * u[i];
  });
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
