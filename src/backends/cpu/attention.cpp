// Absorbed MLA over the latent cache (model.py MLA.forward, attn_impl "absorb"): kv_b_proj's
// k_nope rows fold into the query (q_lat = W_kᵀ q_nope) and its v rows into the output
// (out = W_v o_lat), so attention reads the cached [kv_norm(c_kv) | k_pe] rows directly and
// per-head K/V are never expanded. q_pe sits beside q_lat (qcat), so one dot product with a
// cache row gives a score.
//
// Decode (few tokens): kv_b_proj is read as stored; the scores and values of all heads come
// from one pass over each part of an entry's context (see the decode branch). Prefill: kv_b_proj
// head blocks are dequantised once per call and the three steps run as sgemm, the scores in
// blocks of consecutive entries of one sequence.
#include <cblas.h>

#include <algorithm>
#include <cmath>

#include "backends/cpu/attend_kernels.h"
#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/kernels.h"
#include "model/scratch.h"

namespace dsv3 {

namespace {

// Scores r[0 .. len) -> exp(r - max), in place; returns the max and their sum (in double).
float exp_shifted(float* r, int64_t len, double& sum) {
  const float mx = *std::max_element(r, r + len);
  sum = 0;
  for (int64_t t = 0; t < len; ++t) sum += (r[t] = std::exp(r[t] - mx));
  return mx;
}

// Scores r[0 .. len) -> probabilities, in place; r[len .. m) (positions this query may not see)
// -> 0.
void softmax_row(float* r, int64_t len, int64_t m) {
  double sum;
  exp_shifted(r, len, sum);
  const float inv = float(1.0 / sum);
  for (int64_t t = 0; t < len; ++t) r[t] *= inv;
  std::fill(r + len, r + m, 0.0f);
}

// Prefill entries per attention block (see attend_block below).
constexpr int64_t kAttendBlock = 16;

// Decode: context rows per part (at least; a context splits into up to 2 parts per thread).
constexpr int64_t kDecodePartRows = 128;

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
  const bool batched = n >= kGemmMinTokens;
  // Prefill: the scores of a block of entries, or a head's dequantised kv_b_proj rows (decode
  // reserves its own below).
  int64_t max_ctx = 0;
  for (int64_t i = 0; i < n; ++i) max_ctx = std::max(max_ctx, ctx[size_t(i)].n_ctx);
  if (batched)
    reserve_thread_scratch(
        std::max(std::min(kAttendBlock, n) * nh * max_ctx, std::max(nope, vd) * cpu::padded_stride(L)));

  // Step 1 for heads [h0, h1): qcat.
  auto absorb_q = [&](int t, int64_t h0, int64_t h1) {
    for (int64_t h = h0; h < h1; ++h) {
      if (batched) {
        const int64_t ld = cpu::padded_stride(L);
        float* wk = thread_scratch(t, nope * ld);  // [nope, L]
        cpu::dequant_rows(kvb, h * per, h * per + nope, wk, ld);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(n), int(L), int(nope), 1.0f, q + h * qk,
                    int(nh * qk), wk, int(ld), 0.0f, qcat + h * row, int(nh * row));
      } else {
        for (int64_t i = 0; i < n; ++i)
          cpu::matvec_t_rows(kvb, h * per, h * per + nope, q + (i * nh + h) * qk, qcat + (i * nh + h) * row);
      }
      for (int64_t i = 0; i < n; ++i) std::copy_n(q + (i * nh + h) * qk + nope, R, qcat + (i * nh + h) * row + L);
    }
  };
  // Step 2 (olat = softmax(scale · qcat · Cᵀ) · C[:, :L]) for entries [i0, i1) that read the same
  // cache rows, each one more than the one before (a prompt's tokens; or one entry alone): one
  // pair of sgemms for all their heads against the last entry's rows, the rows an earlier entry
  // may not see masked out of its softmax (probability 0). Per entry, OpenBLAS packed the same
  // cache rows again for every token (M = n_heads rows each).
  auto attend_block = [&](int t, int64_t i0, int64_t i1) {
    const int64_t rows_q = (i1 - i0) * nh, m = ctx[size_t(i1 - 1)].n_ctx;
    const float* c = ctx[size_t(i0)].rows;
    float* p = thread_scratch(t, rows_q * m);  // [rows_q, m]
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(rows_q), int(m), int(row), s.softmax_scale,
                qcat + i0 * nh * row, int(row), c, int(row), 0.0f, p, int(m));
    for (int64_t i = i0; i < i1; ++i)
      for (int64_t h = 0; h < nh; ++h) softmax_row(p + ((i - i0) * nh + h) * m, ctx[size_t(i)].n_ctx, m);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(rows_q), int(L), int(m), 1.0f, p, int(m), c, int(row),
                0.0f, olat + i0 * nh * L, int(L));
  };
  // Step 3 for heads [h0, h1): out[:, h] = W_v,h · olat[:, h].
  auto project_out = [&](int t, int64_t h0, int64_t h1) {
    for (int64_t h = h0; h < h1; ++h) {
      if (batched) {
        const int64_t ld = cpu::padded_stride(L);
        float* wv = thread_scratch(t, vd * ld);  // [vd, L]
        cpu::dequant_rows(kvb, h * per + nope, h * per + per, wv, ld);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(n), int(vd), int(L), 1.0f, olat + h * L,
                    int(nh * L), wv, int(ld), 0.0f, out + h * vd, int(nh * vd));
      } else {
        cpu::matvec_rows(kvb, h * per + nope, h * per + per, olat + h * L, n, nh * L, out + h * vd, nh * vd);
      }
    }
  };

  if (!batched) {
    // Decode: each entry's cache rows are read for all heads at once (attend_kernels.h: scores,
    // then values, the part still in L2), in parts of its context spread over the threads; each
    // part keeps its scores' maximum and exp-sum per head, and the parts combine exactly as one
    // softmax would (rescaled by exp(max_part - max)). Groups of heads had each read the whole
    // cache twice through OpenBLAS, which packed it first: 8 reads and 8 copies per layer at two
    // threads, ~10% of bench-m's decode at 600 tokens of context and ~30% at 2000.
    const int64_t groups = std::min<int64_t>(nh, 2 * int64_t(T));
    // About two parts per thread over all entries (several entries are parallel work already):
    // the parts' outputs (n_heads x kv_lora_rank floats each) stay within ~2T of them.
    const int64_t max_parts = std::max<int64_t>(1, (2 * int64_t(T) + n - 1) / n);
    auto parts_of = [&](int64_t m) { return std::clamp<int64_t>(m / kDecodePartRows, 1, max_parts); };
    float* opart = grow(opart_, n * max_parts * nh * (L + 2));  // [entry][part][head]: o (L), max, sum
    pool_.for_chunks(groups, [&](int64_t g, int t) { absorb_q(t, nh * g / groups, nh * (g + 1) / groups); });
    std::vector<ContextPart>& parts = context_parts_;
    parts.clear();
    int64_t part_rows = 0;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t m = ctx[size_t(i)].n_ctx, P = parts_of(m);
      part_rows = std::max(part_rows, (m + P - 1) / P);
      for (int64_t p = 0; p < P; ++p) parts.push_back({int32_t(i), int32_t(p), int32_t(P)});
    }
    reserve_thread_scratch(nh * part_rows);
    pool_.for_chunks(int64_t(parts.size()), [&](int64_t k, int t) {
      const int64_t i = parts[size_t(k)].entry, p = parts[size_t(k)].part, P = parts[size_t(k)].parts;
      const int64_t m = ctx[size_t(i)].n_ctx, j0 = m * p / P, j1 = m * (p + 1) / P, mp = j1 - j0;
      const float* c = ctx[size_t(i)].rows + j0 * row;
      float* sc = thread_scratch(t, nh * mp);  // [nh, mp]
      float* o = opart + (i * max_parts + p) * nh * (L + 2);
      cpu::attend_scores(qcat + i * nh * row, nh, row, c, row, mp, s.softmax_scale, sc, mp);
      for (int64_t h = 0; h < nh; ++h) {
        double sum;
        o[nh * L + 2 * h] = exp_shifted(sc + h * mp, mp, sum);
        o[nh * L + 2 * h + 1] = float(sum);
      }
      cpu::attend_values(sc, nh, mp, c, row, mp, L, o);
    });
    // Combine the parts (olat = Σ_p o_p · e^(max_p - max) / Σ_p sum_p · e^(max_p - max)), then
    // project, per group of heads.
    pool_.for_chunks(groups, [&](int64_t g, int t) {
      const int64_t h0 = nh * g / groups, h1 = nh * (g + 1) / groups, stride = nh * (L + 2);
      for (int64_t i = 0; i < n; ++i) {
        const int64_t P = parts_of(ctx[size_t(i)].n_ctx);
        const float* o = opart + i * max_parts * stride;
        for (int64_t h = h0; h < h1; ++h) {
          auto part_max = [&](int64_t p) { return double(o[p * stride + nh * L + 2 * h]); };
          auto part_sum = [&](int64_t p) { return double(o[p * stride + nh * L + 2 * h + 1]); };
          double mx = -INFINITY, denom = 0;
          for (int64_t p = 0; p < P; ++p) mx = std::max(mx, part_max(p));
          for (int64_t p = 0; p < P; ++p) denom += part_sum(p) * std::exp(part_max(p) - mx);
          float* ol = olat + (i * nh + h) * L;
          for (int64_t p = 0; p < P; ++p) {
            const float f = float(std::exp(part_max(p) - mx) / denom);
            const float* op = o + p * stride + h * L;
            for (int64_t k = 0; k < L; ++k) ol[k] = p == 0 ? op[k] * f : ol[k] + op[k] * f;
          }
        }
      }
      project_out(t, h0, h1);
    });
    return;
  }
  pool_.for_chunks(nh, [&](int64_t h, int t) { absorb_q(t, h, h + 1); });
  std::vector<int64_t>& starts = block_starts_;  // entry blocks for attend_block
  starts.clear();
  for (int64_t i = 0; i < n; ++i)
    if (i == 0 || i - starts.back() == kAttendBlock || ctx[size_t(i)].rows != ctx[size_t(i - 1)].rows ||
        ctx[size_t(i)].n_ctx != ctx[size_t(i - 1)].n_ctx + 1)
      starts.push_back(i);
  starts.push_back(n);
  pool_.for_chunks(int64_t(starts.size()) - 1,
                   [&](int64_t b, int t) { attend_block(t, starts[size_t(b)], starts[size_t(b + 1)]); });
  pool_.for_chunks(nh, [&](int64_t h, int t) { project_out(t, h, h + 1); });
}

}  // namespace dsv3
