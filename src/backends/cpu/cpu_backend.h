// The CPU backend: SIMD kernels (kernels.h, Highway runtime dispatch) over weights as stored,
// our f32 GEMM (gemm.h) on dequantised tiles for many-token batches, and our own thread pool
// (passed in). Decode steps reuse grow-only scratch: after the first steps at a given context
// length they do not allocate. Ops it does not override (embed, rope, naive attention) run
// the scalar reference. Every op computes a token's (an entry's) result the same way whatever
// else shares the call: the linear kernels sum in one order (dot_order-inl.h) and attention
// splits contexts at fixed positions (attention.cpp), so that answers do not depend on batching.
#pragma once

#include <span>
#include <vector>

#include "backends/cpu/attend_kernels.h"
#include "base/thread_pool.h"
#include "ops/reference/reference.h"

namespace dsv3 {

class CpuBackend : public ReferenceBackend {
 public:
  explicit CpuBackend(ThreadPool& pool);

  void rms_norm(const float* x, int64_t n, const Weight& w, float eps, float* out) override;
  void linear(const Weight& w, const float* x, int64_t n, float* y) override;
  void mla_attention(const MlaShape& s, const float* q, int64_t n, std::span<const LatentRows> ctx, float* out,
                     bool absorbed) override;
  void moe_route(const RouteShape& s, const float* logits, int64_t n, int32_t* experts, float* weights) override;
  void moe(const MoeWeights& w, const float* x, int64_t n, const int32_t* experts, const float* weights,
           int64_t top_k, float* out) override;
  void mlp(const MlpWeights& w, const float* x, int64_t n, float* out) override;
  void add(float* y, const float* x, int64_t count) override;

  ThreadPool& pool() { return pool_; }

  // y [n, w.rows] = x [n, w.cols] · Wᵀ for several independent layers in one parallel region,
  // rows split over the threads in proportion to rows x cols. A job may take a band of w's rows
  // [row_begin, row_end) (y's column 0 is row row_begin) and strided x and y (0: dense).
  struct LinearJob {
    const Weight* w;
    const float* x;  // [n, w->cols], row stride x_stride
    int64_t n;
    float* y;  // [n, rows of the band], row stride y_stride
    int64_t x_stride = 0, y_stride = 0;
    int64_t row_begin = 0, row_end = -1;  // -1: w->rows
  };
  void linear_jobs(std::span<const LinearJob> jobs);

  // Batches of at least this many tokens go through gemm.h on dequantised tiles; smaller ones
  // through the matrix-vector kernel that decodes each weight once per 4 tokens (as fast per
  // token below one full panel of 16 tokens: 8, 16 and 24 measured within noise at pp512, 16
  // ahead at 10-24-token prompts here). Both sum every output in the same order
  // (dot_order-inl.h), so which one a token goes through does not change its result.
  static constexpr int64_t kGemmMinTokens = 16;

 private:
  // Rows [r0, r1) of one job on thread t (within the job's band).
  void linear_rows(int t, size_t job, int64_t r0, int64_t r1);
  // run_jobs_ = jobs with their strides and bands filled in.
  void normalize_jobs(std::span<const LinearJob> jobs);
  // Packs the x of every many-token job into packed_[job] and unscale_[job] (gemm.h's panels).
  void pack_jobs();
  float* thread_scratch(int t, int64_t count);
  // Grows every thread's scratch to `count` floats here, before a region: which thread runs which
  // chunk varies from call to call, and a steady decode step must not allocate in any of them.
  void reserve_thread_scratch(int64_t count);
  // out [n, rows] = silu(g) * u, in place over g.
  void swiglu(float* g, const float* u, int64_t count);

  ThreadPool& pool_;
  std::vector<std::vector<float>> scratch_;  // per thread: dequantised tiles, attention rows
  // Step scratch (grow-only).
  std::vector<float> g_, u_, gs_, us_, xg_, yg_, ys_, qcat_, olat_, opart_, norm_w_;
  std::vector<int32_t> count_, slot_, route_i_;
  std::vector<int64_t> block_starts_;
  std::vector<float> route_f_;
  std::vector<double> running_;      // attention: per (entry, head) softmax max and sum
  std::vector<std::vector<cpu::RowRun>> row_runs_;  // attention: per thread, a part's cache rows
  std::vector<LinearJob> attn_jobs_;  // attention: kv_b_proj's value bands
  std::vector<LinearJob> jobs_;
  struct RowChunk {
    int32_t job;
    int64_t r0, r1;
  };
  std::vector<RowChunk> chunks_;
  std::vector<RowChunk> units_;  // packing units: panels [r0, r1) of a job's x
  struct ContextPart {  // decode attention: part `part` of `parts` of entry `entry`'s context
    int32_t entry, part, parts;
  };
  std::vector<ContextPart> context_parts_;
  std::vector<LinearJob> run_jobs_;  // the jobs of the current linear_jobs call, normalized
  std::vector<float*> packed_;       // per job: its x packed (gemm.h), or null
  std::vector<double*> unscale_;     // per job: gemm.h's FP8 unscale factors, or null
  std::vector<int64_t> pack_offset_, unscale_offset_;
  std::vector<float> xp_;
  std::vector<double> xp_unscale_;
};

}  // namespace dsv3
