// Highway kernels for attend_kernels.h, compiled once per target by foreach_target.h.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "backends/cpu/attend_kernels.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "backends/cpu/fold-inl.h"  // Fold: a score's lane order
#include "hwy/contrib/math/math-inl.h"

#include <algorithm>

#include "backends/cpu/attend_kernels.h"

HWY_BEFORE_NAMESPACE();
namespace dsv3::cpu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// N cache values from p as f32: f32 rows as they are, BF16 rows widened (exact).
HWY_INLINE VF LoadRow(DF df, const float* p) { return hn::LoadU(df, p); }
HWY_INLINE VF LoadRow(DF df, const uint16_t* p) {
  const hn::RebindToUnsigned<DF> du32;
  const hn::Rebind<uint16_t, DF> du16;
  return hn::BitCast(df, hn::ShiftLeft<16>(hn::PromoteTo(du32, hn::LoadU(du16, p))));
}
HWY_INLINE float RowValue(const float* p, int64_t k) { return p[k]; }
HWY_INLINE float RowValue(const uint16_t* p, int64_t k) {
  const uint32_t u = uint32_t(p[k]) << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}

#if HWY_TARGET <= HWY_AVX3
// Fold of v[0 .. 16) (16-lane vectors) at once: lane 4b + i of the result is v[4i + b]'s.
// ~45 shuffles and adds where sixteen Folds take ~140; each level adds the same lanes in
// the same order as Fold, so the sums keep their bits.
HWY_INLINE __m512 Sum16(const VF* v) {
  __m512 t[8], u[4], w[2];
  for (int i = 0; i < 8; ++i)  // lanes 0-7: v[2i]'s halves added, 8-15: v[2i + 1]'s
    t[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i].raw, v[2 * i + 1].raw, 0x44),
                         _mm512_shuffle_f32x4(v[2 * i].raw, v[2 * i + 1].raw, 0xEE));
  for (int i = 0; i < 4; ++i)  // 128-bit block b: v[4i + b]'s four partial sums
    u[i] = _mm512_add_ps(_mm512_shuffle_f32x4(t[2 * i], t[2 * i + 1], 0x88),
                         _mm512_shuffle_f32x4(t[2 * i], t[2 * i + 1], 0xDD));
  for (int i = 0; i < 2; ++i)  // block b, lanes 0-1: v[8i + b]'s two partial sums; 2-3: v[8i + 4 + b]'s
    w[i] = _mm512_add_ps(_mm512_shuffle_ps(u[2 * i], u[2 * i + 1], 0x44), _mm512_shuffle_ps(u[2 * i], u[2 * i + 1], 0xEE));
  return _mm512_add_ps(_mm512_shuffle_ps(w[0], w[1], 0x88), _mm512_shuffle_ps(w[0], w[1], 0xDD));
}
#endif

// Scores of kH heads against kJ cache rows: kH x kJ accumulators over k, each cache and query
// vector loaded once per k step; the k tail in scalars.
template <int kH, int kJ, typename T>
HWY_INLINE void ScoreBlock(const float* q, int64_t k_len, const T* c, int64_t c_stride, float scale, float* s,
                           int64_t ld, const T* ahead) {
  const DF df;
  const int64_t N = int64_t(hn::Lanes(df)), kv = k_len / N * N;
  VF acc[kH][kJ];
  for (int h = 0; h < kH; ++h)
    for (int j = 0; j < kJ; ++j) acc[h][j] = hn::Zero(df);
  for (int64_t k = 0; k < kv; k += N) {
    if (ahead != nullptr)
      for (int j = 0; j < kJ; ++j) __builtin_prefetch(ahead + j * c_stride + k, 0, 3);
    VF cv[kJ];
    for (int j = 0; j < kJ; ++j) cv[j] = LoadRow(df, c + j * c_stride + k);
    for (int h = 0; h < kH; ++h) {
      const VF qv = hn::LoadU(df, q + h * k_len + k);
      for (int j = 0; j < kJ; ++j) acc[h][j] = hn::MulAdd(qv, cv[j], acc[h][j]);
    }
  }
  float sums[kH][kJ];
#if HWY_TARGET <= HWY_AVX3
  if constexpr (kH * kJ == 16) {
    alignas(64) float r[16];
    _mm512_store_ps(r, Sum16(&acc[0][0]));
    for (int a = 0; a < 16; ++a) sums[a / kJ][a % kJ] = r[4 * (a % 4) + a / 4];
  } else
#endif
  {
    for (int h = 0; h < kH; ++h)
      for (int j = 0; j < kJ; ++j) sums[h][j] = Fold(df, acc[h][j]);
  }
  for (int h = 0; h < kH; ++h)
    for (int j = 0; j < kJ; ++j) {
      float sum = sums[h][j];
      for (int64_t k = kv; k < k_len; ++k) sum += q[h * k_len + k] * RowValue(c + j * c_stride, k);
      s[h * ld + j] = scale * sum;
    }
}

// Each score is its own dot product over k: how the rows are grouped does not change it. With
// `prefetch` (the first block of heads, which meets the rows first: in decode they come from
// memory, a layer's weights having streamed through the caches since they were written) the rows
// kAhead blocks on are fetched into L1 while a block is summed: one line per row and k step.
template <int kH, typename T>
HWY_INLINE void ScoreRows(const float* q, int64_t k_len, const T* c, int64_t c_stride, int64_t m, float scale,
                          float* s, int64_t ld, bool prefetch) {
  constexpr int kJ = 4, kAhead = 2;
  int64_t j = 0;
  for (; j + kJ <= m; j += kJ) {
    const T* ahead = prefetch && j + (kAhead + 1) * kJ <= m ? c + (j + kAhead * kJ) * c_stride : nullptr;
    ScoreBlock<kH, kJ>(q, k_len, c + j * c_stride, c_stride, scale, s + j, ld, ahead);
  }
  for (; j < m; ++j) ScoreBlock<kH, 1>(q, k_len, c + j * c_stride, c_stride, scale, s + j, ld, static_cast<const T*>(nullptr));
}

template <typename T>
void AttendScoresT(const float* q, int64_t nq, int64_t k_len, const RowRun* runs, int64_t n_runs, int64_t stride,
                   float scale, float* s, int64_t ld) {
  // 4 heads x 4 rows: 16 accumulators and 8 loads per 16 FMAs (AVX2's 16 registers too).
  int64_t j0 = 0;
  for (int64_t r = 0; r < n_runs; ++r) {
    const T* c = static_cast<const T*>(runs[r].first);
    const int64_t m = runs[r].rows;
    int64_t h = 0;
    for (; h + 4 <= nq; h += 4) ScoreRows<4>(q + h * k_len, k_len, c, stride, m, scale, s + h * ld + j0, ld, h == 0);
    for (; h < nq; ++h) ScoreRows<1>(q + h * k_len, k_len, c, stride, m, scale, s + h * ld + j0, ld, h == 0);
    j0 += m;
  }
}

void AttendScores(const float* q, int64_t nq, int64_t k_len, const RowRun* runs, int64_t n_runs, int64_t stride,
                  bool bf16, float scale, float* s, int64_t ld) {
  if (bf16) return AttendScoresT<uint16_t>(q, nq, k_len, runs, n_runs, stride, scale, s, ld);
  AttendScoresT<float>(q, nq, k_len, runs, n_runs, stride, scale, s, ld);
}

// Values of kH heads over columns [k0, k0 + kV·N): kH x kV accumulators, one pass over the rows,
// each row's kV vectors loaded once and each probability broadcast once.
template <int kH, int kV, typename T>
HWY_INLINE void ValueBlock(const float* p, int64_t ld, const RowRun* runs, int64_t n_runs, int64_t stride, int64_t k0,
                           float* o, int64_t len) {
  const DF df;
  const int64_t N = int64_t(hn::Lanes(df));
  VF acc[kH][kV];
  for (int h = 0; h < kH; ++h)
    for (int v = 0; v < kV; ++v) acc[h][v] = hn::Zero(df);
  // One pass over the rows in order, run after run: the sums of contiguous rows.
  int64_t j = 0;
  for (int64_t r = 0; r < n_runs; ++r) {
    const T* c = static_cast<const T*>(runs[r].first) + k0;
    for (const int64_t end = j + runs[r].rows; j < end; ++j, c += stride) {
      VF cv[kV];
      for (int v = 0; v < kV; ++v) cv[v] = LoadRow(df, c + v * N);
      for (int h = 0; h < kH; ++h) {
        const VF pv = hn::Set(df, p[h * ld + j]);
        for (int v = 0; v < kV; ++v) acc[h][v] = hn::MulAdd(pv, cv[v], acc[h][v]);
      }
    }
  }
  for (int h = 0; h < kH; ++h)
    for (int v = 0; v < kV; ++v) hn::StoreU(acc[h][v], df, o + h * len + k0 + v * N);
}

template <int kH, typename T>
HWY_INLINE void ValueRows(const float* p, int64_t ld, const RowRun* runs, int64_t n_runs, int64_t stride, int64_t len,
                          float* o) {
  const int64_t N = int64_t(hn::Lanes(DF()));
  int64_t k = 0;
  for (; k + 2 * N <= len; k += 2 * N) ValueBlock<kH, 2, T>(p, ld, runs, n_runs, stride, k, o, len);
  for (; k + N <= len; k += N) ValueBlock<kH, 1, T>(p, ld, runs, n_runs, stride, k, o, len);
  for (; k < len; ++k)
    for (int h = 0; h < kH; ++h) {
      float sum = 0;
      int64_t j = 0;
      for (int64_t r = 0; r < n_runs; ++r) {
        const T* c = static_cast<const T*>(runs[r].first);
        for (int64_t i = 0; i < runs[r].rows; ++i, ++j) sum += p[h * ld + j] * RowValue(c + i * stride, k);
      }
      o[h * len + k] = sum;
    }
}

template <typename T>
void AttendValuesT(const float* p, int64_t nq, int64_t ld, const RowRun* c, int64_t n_runs, int64_t stride,
                   int64_t len, float* o) {
  // 8 heads x 2 vectors (6 x 2 with AVX2's 16 registers): 16 accumulators, 2 loads and 8
  // broadcasts per 16 FMAs; the cache part is read once per 8 heads.
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
  constexpr int kH = 8;
#else
  constexpr int kH = 6;
#endif
  int64_t h = 0;
  for (; h + kH <= nq; h += kH) ValueRows<kH, T>(p + h * ld, ld, c, n_runs, stride, len, o + h * len);
  for (; h + 2 <= nq; h += 2) ValueRows<2, T>(p + h * ld, ld, c, n_runs, stride, len, o + h * len);
  for (; h < nq; ++h) ValueRows<1, T>(p + h * ld, ld, c, n_runs, stride, len, o + h * len);
}

void AttendValues(const float* p, int64_t nq, int64_t ld, const RowRun* runs, int64_t n_runs, int64_t stride,
                  bool bf16, int64_t len, float* o) {
  if (bf16) return AttendValuesT<uint16_t>(p, nq, ld, runs, n_runs, stride, len, o);
  AttendValuesT<float>(p, nq, ld, runs, n_runs, stride, len, o);
}

float ExpShifted(float* r, int64_t len, double& sum) {
  const DF df;
  const int64_t N = int64_t(hn::Lanes(df)), full = len / N * N;
  VF vmax = hn::Set(df, r[0]);
  for (int64_t t = 0; t < full; t += N) vmax = hn::Max(vmax, hn::LoadU(df, r + t));
  float mx = hn::GetLane(hn::MaxOfLanes(df, vmax));
  for (int64_t t = full; t < len; ++t) mx = std::max(mx, r[t]);
  const VF vm = hn::Set(df, mx);
  for (int64_t t = 0; t < full; t += N) hn::StoreU(hn::Exp(df, hn::Sub(hn::LoadU(df, r + t), vm)), df, r + t);
  if (full < len) {  // the tail through the same vector code, padded
    constexpr int64_t kMax = int64_t(hn::MaxLanes(DF()));
    float tmp[kMax] = {};
    std::copy(r + full, r + len, tmp);
    hn::StoreU(hn::Exp(df, hn::Sub(hn::LoadU(df, tmp), vm)), df, tmp);
    std::copy(tmp, tmp + (len - full), r + full);
  }
  sum = 0;
  for (int64_t t = 0; t < len; ++t) sum += r[t];
  return mx;
}

}  // namespace HWY_NAMESPACE
}  // namespace dsv3::cpu
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace dsv3::cpu {

HWY_EXPORT(AttendScores);
HWY_EXPORT(AttendValues);
HWY_EXPORT(ExpShifted);

float exp_shifted(float* r, int64_t len, double& sum) { return HWY_DYNAMIC_DISPATCH(ExpShifted)(r, len, sum); }

void attend_scores(const float* q, int64_t nq, int64_t k_len, const RowRun* runs, int64_t n_runs, int64_t stride,
                   CacheDtype dtype, float scale, float* s, int64_t ld) {
  HWY_DYNAMIC_DISPATCH(AttendScores)(q, nq, k_len, runs, n_runs, stride, dtype == CacheDtype::BF16, scale, s, ld);
}
void attend_values(const float* p, int64_t nq, int64_t ld, const RowRun* runs, int64_t n_runs, int64_t stride,
                   CacheDtype dtype, int64_t len, float* o) {
  HWY_DYNAMIC_DISPATCH(AttendValues)(p, nq, ld, runs, n_runs, stride, dtype == CacheDtype::BF16, len, o);
}

}  // namespace dsv3::cpu
#endif
