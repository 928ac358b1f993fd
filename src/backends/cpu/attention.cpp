// Absorbed MLA over the latent cache (model.py MLA.forward, attn_impl "absorb"): kv_b_proj's
// k_nope rows fold into the query (q_lat = W_kᵀ q_nope) and its v rows into the output
// (out = W_v o_lat), so attention reads the cached [kv_norm(c_kv) | k_pe] rows directly and
// per-head K/V are never expanded. q_pe sits beside q_lat (qcat), so one dot product with a
// cache row gives a score.
//
// Every entry's arithmetic depends on its own query and context only, never on the other entries
// of the step (a decode entry alone or in a batch, a prompt token whatever its chunking): the
// context goes in parts of kPartRows rows at fixed positions, each part's scores, softmax
// numerators and values are computed the same way whichever path runs them, and the parts combine
// in part order. The paths differ only in scheduling: consecutive entries of one prompt share
// each part's cache rows on one thread (the scores and values of all their heads in one pass),
// and a lone entry's parts spread over the threads (a long decode context).
#include <algorithm>
#include <cmath>

#include "backends/cpu/attend_kernels.h"
#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/kernels.h"
#include "model/scratch.h"

namespace dsv3 {

namespace {

// Context rows per part: a part's rows (576 floats each for V3) stay in L2 between its scores and
// its values. Fixed, not derived from the thread count or the step, so that an entry's parts are
// the same in every step and at every thread count.
constexpr int64_t kPartRows = 128;

// Prefill entries per block (their queries share each part's cache rows).
constexpr int64_t kAttendBlock = 16;

// Entries per absorb unit (matvec_t_rows shares each weight's decode between them).
constexpr int64_t kAbsorbEntries = 32;

int64_t parts_of(int64_t n_ctx) { return (n_ctx + kPartRows - 1) / kPartRows; }

// One (entry, head)'s softmax over the parts seen so far: o = Σ_p o_p · e^(max_p - m), d = Σ_p
// sum_p · e^(max_p - m) (md[1]), m = the largest max_p (md[0]). Parts fold in in part order
// (online softmax); `finish` divides by d.
void fold_part(float* o, double* md, const float* op, float max_p, float sum_p, int64_t L, bool first) {
  if (first) {
    std::copy_n(op, L, o);
    md[0] = max_p, md[1] = sum_p;
    return;
  }
  const double mx = std::max(md[0], double(max_p)), a = std::exp(md[0] - mx), b = std::exp(double(max_p) - mx);
  md[1] = md[1] * a + double(sum_p) * b;
  md[0] = mx;
  const float fa = float(a), fb = float(b);
  for (int64_t k = 0; k < L; ++k) o[k] = o[k] * fa + op[k] * fb;
}

void finish(float* o, const double* md, int64_t L) {
  const float inv = float(1.0 / md[1]);
  for (int64_t k = 0; k < L; ++k) o[k] *= inv;
}

}  // namespace

void CpuBackend::mla_attention(const MlaShape& s, const float* q, int64_t n, std::span<const LatentRows> ctx,
                               float* out, bool absorbed) {
  if (!absorbed || n == 0) {
    ReferenceBackend::mla_attention(s, q, n, ctx, out, absorbed);
    return;
  }
  const Weight& kvb = *s.kv_b_proj;
  const int64_t nh = s.n_heads, nope = s.qk_nope_head_dim, R = s.qk_rope_head_dim, vd = s.v_head_dim;
  const int64_t L = s.kv_lora_rank, per = nope + vd, qk = nope + R, row = L + R;
  const int T = pool_.size();
  float* qcat = grow(qcat_, n * nh * row);  // [n, nh, L + R] = [q_lat | q_pe]
  float* olat = grow(olat_, n * nh * L);    // [n, nh, L]
  double* md = grow(running_, 2 * n * nh);  // [n, nh]: fold_part's m and d
  if (row_runs_.size() < size_t(T)) row_runs_.assign(size_t(T), std::vector<cpu::RowRun>(size_t(kPartRows)));

  // Step 1: qcat for every entry, per head and chunk of entries (each entry's sums the same in any
  // chunk: matvec_t_rows).
  const int64_t entry_chunks = (n + kAbsorbEntries - 1) / kAbsorbEntries;
  pool_.for_chunks(nh * entry_chunks, [&](int64_t u, int) {
    const int64_t h = u % nh, i0 = u / nh * kAbsorbEntries, i1 = std::min(n, i0 + kAbsorbEntries);
    cpu::matvec_t_rows(kvb, h * per, h * per + nope, q + (i0 * nh + h) * qk, i1 - i0, nh * qk,
                       qcat + (i0 * nh + h) * row, nh * row);
    for (int64_t i = i0; i < i1; ++i) std::copy_n(q + (i * nh + h) * qk + nope, R, qcat + (i * nh + h) * row + L);
  });

  // Part p of entries [i0, i1) (one sequence at consecutive positions, so that they read the same
  // cache rows and the ones that reach part p are a suffix): o_p (L floats), max and exp-sum per
  // (entry, head) for those entries, into o [rows of (entry, head)][L] and ms [.][2] from entry
  // `first` on; returns `first`. Scores against rows an entry may not see are set to 0 after the
  // softmax numerators: the values' sums over rows in order then equal those over its own rows.
  auto part = [&](int t, int64_t i0, int64_t i1, int64_t p, float* o, float* ms) {
    const int64_t j0 = p * kPartRows;
    int64_t first = i0;
    while (ctx[size_t(first)].n_ctx <= j0) ++first;
    const int64_t rows_q = (i1 - first) * nh, m = std::min(kPartRows, ctx[size_t(i1 - 1)].n_ctx - j0);
    const LatentRows& cx = ctx[size_t(first)];
    // The part's rows as runs of consecutive rows: one per cache block it touches.
    cpu::RowRun* c = row_runs_[size_t(t)].data();
    int64_t n_runs = 0;
    for (int64_t j = 0; j < m;) {
      const int64_t len = cx.blocks ? std::min(m - j, cx.block_size - (j0 + j) % cx.block_size) : m - j;
      c[n_runs++] = {cx.row(j0 + j, row), len};
      j += len;
    }
    float* sc = thread_scratch(t, rows_q * m);  // [rows_q, m]
    cpu::attend_scores(qcat + first * nh * row, rows_q, row, c, n_runs, row, cx.dtype, s.softmax_scale, sc, m);
    for (int64_t i = first; i < i1; ++i) {
      const int64_t len = std::min(kPartRows, ctx[size_t(i)].n_ctx - j0);
      for (int64_t h = 0; h < nh; ++h) {
        const int64_t k = (i - first) * nh + h;
        double sum;
        ms[2 * k] = cpu::exp_shifted(sc + k * m, len, sum);
        ms[2 * k + 1] = float(sum);
        std::fill(sc + k * m + len, sc + (k + 1) * m, 0.0f);
      }
    }
    cpu::attend_values(sc, rows_q, m, c, n_runs, row, cx.dtype, L, o);
    return first;
  };

  // Blocks of entries for one thread each: consecutive entries of one sequence at consecutive
  // positions, at most kAttendBlock (a lone entry is a block of its own).
  std::vector<int64_t>& starts = block_starts_;
  starts.clear();
  for (int64_t i = 0; i < n; ++i)
    if (i == 0 || i - starts.back() == kAttendBlock || !ctx[size_t(i)].same_rows(ctx[size_t(i - 1)]) ||
        ctx[size_t(i)].n_ctx != ctx[size_t(i - 1)].n_ctx + 1)
      starts.push_back(i);
  starts.push_back(n);
  const int64_t n_blocks = int64_t(starts.size()) - 1;
  // A lone entry with several parts spreads them over the threads (below); a block runs its parts
  // on one thread in order, folding each into olat as it comes.
  auto spread = [&](int64_t b) {
    return starts[size_t(b + 1)] - starts[size_t(b)] == 1 && parts_of(ctx[size_t(starts[size_t(b)])].n_ctx) > 1;
  };
  int64_t block_entries = 1;
  for (int64_t b = 0; b < n_blocks; ++b)
    block_entries = std::max(block_entries, starts[size_t(b + 1)] - starts[size_t(b)]);
  reserve_thread_scratch(block_entries * nh * (kPartRows + L + 2));
  pool_.for_chunks(n_blocks, [&](int64_t b, int t) {
    if (spread(b)) return;
    const int64_t i0 = starts[size_t(b)], i1 = starts[size_t(b + 1)], P = parts_of(ctx[size_t(i1 - 1)].n_ctx);
    const int64_t cnt = i1 - i0;
    // The thread's scratch holds the scores first and this part's o and maxima after them.
    float* o = thread_scratch(t, cnt * nh * (kPartRows + L + 2)) + cnt * nh * kPartRows;
    float* ms = o + cnt * nh * L;
    for (int64_t p = 0; p < P; ++p) {
      const int64_t first = part(t, i0, i1, p, o, ms);
      for (int64_t i = first; i < i1; ++i)
        for (int64_t h = 0; h < nh; ++h) {
          const int64_t k = (i - first) * nh + h;
          fold_part(olat + (i * nh + h) * L, md + 2 * (i * nh + h), o + k * L, ms[2 * k], ms[2 * k + 1], L, p == 0);
        }
    }
    for (int64_t i = i0; i < i1; ++i)
      for (int64_t h = 0; h < nh; ++h) finish(olat + (i * nh + h) * L, md + 2 * (i * nh + h), L);
  });

  // Lone entries' parts, in waves of at most max_stored parts (their outputs, n_heads x
  // kv_lora_rank floats each, wait for the fold in part order).
  const int64_t max_stored = std::max<int64_t>(16, 4 * int64_t(T)), stride = nh * (L + 2);
  std::vector<ContextPart>& parts = context_parts_;
  for (int64_t b = 0; b < n_blocks;) {
    parts.clear();
    int64_t b_end = b;
    for (; b_end < n_blocks; ++b_end) {
      if (!spread(b_end)) continue;
      const int64_t i = starts[size_t(b_end)], P = parts_of(ctx[size_t(i)].n_ctx);
      if (!parts.empty() && int64_t(parts.size()) + P > max_stored) break;
      for (int64_t p = 0; p < P; ++p) parts.push_back({int32_t(i), int32_t(p), int32_t(P)});
    }
    b = b_end;
    if (parts.empty()) break;
    float* opart = grow(opart_, int64_t(parts.size()) * stride);  // [part][head]: o (L), then max, sum
    pool_.for_chunks(int64_t(parts.size()), [&](int64_t k, int t) {
      const ContextPart& cp = parts[size_t(k)];
      float* o = opart + k * stride;
      part(t, cp.entry, cp.entry + 1, cp.part, o, o + nh * L);
    });
    // parts of one entry are consecutive, in part order
    pool_.for_chunks(int64_t(parts.size()), [&](int64_t k, int) {
      const ContextPart& cp = parts[size_t(k)];
      if (cp.part != 0) return;
      const int64_t i = cp.entry;
      for (int64_t h = 0; h < nh; ++h) {
        float* ol = olat + (i * nh + h) * L;
        for (int64_t p = 0; p < cp.parts; ++p) {
          const float* o = opart + (k + p) * stride;
          fold_part(ol, md + 2 * (i * nh + h), o + h * L, o[nh * L + 2 * h], o[nh * L + 2 * h + 1], L, p == 0);
        }
        finish(ol, md + 2 * (i * nh + h), L);
      }
    });
  }

  // Step 3: out[:, h] = W_v,h · olat[:, h], a linear over each head's band of kv_b_proj rows.
  std::vector<LinearJob>& jobs = attn_jobs_;
  jobs.clear();
  for (int64_t h = 0; h < nh; ++h)
    jobs.push_back({.w = &kvb, .x = olat + h * L, .n = n, .y = out + h * vd, .x_stride = nh * L, .y_stride = nh * vd,
                    .row_begin = h * per + nope, .row_end = h * per + per});
  linear_jobs(jobs);
}

}  // namespace dsv3
