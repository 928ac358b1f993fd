// The one summation order of y[t, r] = Σ_c W[r, c] · x[t, c] that every linear kernel of the CPU
// backend follows, whichever path computes it: the one-token decode kernel, the 2-4-token kernels
// (kernels.cpp) and the many-token GEMM (gemm.cpp). An output's bits then depend only on its row
// and its token's activations, never on how many tokens share the call or on how the rows are
// split over threads: a request's answer is the same alone and inside any batch (continuous
// batching), and a prompt's states are the same whatever its chunking into steps.
//
// The order, per row r and token t (N = SIMD lanes of the target, C = chains of the layout):
// 1. Columns go in segments of L::kSegment; a segment's sum is added to y in segment order.
// 2. A segment's columns go in groups of G = C·D·N; group k's columns land in chain q, lane l,
//    depth d < D by the layout's permutation (the order its SIMD loads deliver). Columns past the
//    segment's end are zeros on both sides (adding 0·0 leaves a sum unchanged).
// 3. Weights: as stored, FP8 e4m3 times 2^-120 (exact; LoadE4m3Bits). Activations: permuted alike;
//    FP8 also times 2^e (e from the segment's max |x|, so that the products stay clear of overflow
//    and of subnormals), then, where the weight has scales, times the scale_inv of the 128x128
//    block: xq = (x · 2^e) · scale_inv, two roundings in this order. Scaling the activations once
//    per 128-row block rather than each weight keeps the decode kernels at one FMA per weight
//    vector: a multiply per FP8 weight vector summed rows in cache at ~0.6 of the speed.
// 4. Partial (q, l) = fma(w, xq, ·) over the groups k in order and within a group over d, from +0.
// 5. Segment sum = a perfect binary tree over the partials taken in the order (q, bitrev(l)): per
//    chain the lanes fold in halves (lane l + lane l + N/2, ...), then the chains pair up,
//    (q0 + q1) + (q2 + q3), or q0 + q1. Kernels with lanes over columns fold their chain vectors;
//    the GEMM, with lanes over tokens, visits the partials in that order and merges them like a
//    binary counter.
// 6. FP8: the tree's sum times 2^(120 - e) in double, rounded to f32.
// Rejected: summing each output in one sequential chain, what a broadcast GEMM does naturally: the
// decode kernel would then have to read the weights transposed.
//
// Included once per Highway target by kernels.cpp and gemm.cpp (the usual -inl.h toggle).
#if defined(DSV3_BACKENDS_CPU_DOT_ORDER_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef DSV3_BACKENDS_CPU_DOT_ORDER_INL_H_
#undef DSV3_BACKENDS_CPU_DOT_ORDER_INL_H_
#else
#define DSV3_BACKENDS_CPU_DOT_ORDER_INL_H_
#endif

#include <algorithm>
#include <cmath>
#include <cstring>

#include "backends/cpu/fold-inl.h"  // Fold: step 5's lane order
#include "hwy/highway.h"
#include "weights/weight.h"

HWY_BEFORE_NAMESPACE();
namespace dsv3::cpu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// Software prefetch of weights, read once (prefetchnta): on Zen 5 a non-temporal prefetch keeps
// the weight lines from evicting the activations the kernel re-reads for every row from L1. One
// core, FP8 rows of 7168 columns (28 KiB of activations): 0.89-0.90 of sum_f32 over the same
// buffer against 0.80-0.85 with prefetcht1 (the earlier choice: the weight window and the
// activations had filled Zen 4's 32 KiB L1); 2048-column FP8 and BF16 rows 0.98-1.0 against 0.96.
HWY_INLINE void PrefetchL2(const void* p) { __builtin_prefetch(p, 0, 0); }

// a · b + c with one rounding where the target has FMA: scalar tails call this rather than write
// `c += a * b`, whose contraction into an FMA is the compiler's choice per expression.
HWY_INLINE float MulAdd1(float a, float b, float c) {
  const hn::CappedTag<float, 1> d1;
  return hn::GetLane(hn::MulAdd(hn::Set(d1, a), hn::Set(d1, b), hn::Set(d1, c)));
}

// N e4m3 bytes -> f32 values times 2^-120, exactly: the byte sign-extended to 32 bits, shifted left
// by 20 and masked (0x87F00000) is the f32 with exponent field 0000eeee (subnormals included).
HWY_INLINE VF LoadE4m3Bits(DF df, const uint8_t* p) {
  const hn::RebindToSigned<DF> di;
  const hn::Rebind<int8_t, DF> d8;
  const auto v = hn::PromoteTo(di, hn::LoadU(d8, reinterpret_cast<const int8_t*>(p)));
  return hn::BitCast(df, hn::And(hn::ShiftLeft<20>(v), hn::Set(di, static_cast<int32_t>(0x87F00000u))));
}

#if HWY_TARGET != HWY_SCALAR  // one-lane vectors have no 16-bit halves
// 4N e4m3 bytes -> four f32 vectors, each value times 2^-120 (exact, as LoadE4m3Bits), lane j of
// q[k] holding byte 4j + k. The bytes are read as 16-bit lanes and an arithmetic shift right by 4
// puts a lane's high byte where LoadE4m3Bits' shift puts it (sign at bit 15, eeeemmm at bits
// 10..4); the low byte gets there after a shift left by 8. Masked at 32 bits, the upper 16-bit
// lane of each 32-bit lane is then that f32's bit pattern, and the lower one after a shift left
// by 16. 5 shifts and 4 ANDs for 4N weights against 4 widenings, 4 shifts and 4 ANDs: on Zen 4 the
// widenings and shifts share two pipes, and this decoded FP8 rows in L2 ~25% faster (29 vs 23
// weights/ns on one core).
using D16 = hn::Repartition<int16_t, DF>;
using V16 = hn::Vec<D16>;
HWY_INLINE void DecodeE4m3Quads(DF df, V16 v, VF q[4]) {
  const hn::RebindToSigned<DF> di;
  const auto hi = hn::BitCast(di, hn::ShiftRight<4>(v));                   // bytes 4j + 3 and 4j + 1
  const auto lo = hn::BitCast(di, hn::ShiftRight<4>(hn::ShiftLeft<8>(v)));  // bytes 4j + 2 and 4j
  const auto m = hn::Set(di, static_cast<int32_t>(0x87F00000u));
  q[0] = hn::BitCast(df, hn::And(hn::ShiftLeft<16>(lo), m));
  q[1] = hn::BitCast(df, hn::And(hn::ShiftLeft<16>(hi), m));
  q[2] = hn::BitCast(df, hn::And(lo, m));
  q[3] = hn::BitCast(df, hn::And(hi, m));
}
HWY_INLINE void LoadE4m3Quads(DF df, const uint8_t* p, VF q[4]) {
  DecodeE4m3Quads(df, hn::LoadU(D16(), reinterpret_cast<const int16_t*>(p)), q);
}
#endif

// The layouts (step 2 of the order): G = kC·kDepth·N columns per group, Load puts them into
// kC·kDepth vectors (vector d·kC + q: chain q at depth d), Permute puts G activations into the same
// order (xs[(d·kC + q)·N + l] = x[column of (q, l, d)]).
//
// FP8: the four vectors of LoadE4m3Quads (the fastest decode here; lane l of vector m = column
// 4l + m), values times 2^-120. Where there are 32 vector registers (AVX-512) they are four chains;
// on 16-register targets two chains of depth two (vectors 0, 2 into chain 0, vectors 1, 3 into
// chain 1): four tokens' four chains would not fit the registers, and tokens two at a time decoded
// each weight twice (the 4-token kernel ~0.8 of the speed of the earlier per-block order, here);
// two chains also halve the GEMM's partials. The one-token kernel then waits on the FMA latency
// for rows in cache (~0.8 of the earlier order's speed in L3, here); decode reads its rows from
// memory, where it keeps up (1.02-1.05 of it at two threads).
struct Fp8Layout {
  using T = uint8_t;
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
  static constexpr int kC = 4, kDepth = 1;
#else
  static constexpr int kC = 2, kDepth = 2;
#endif
  static constexpr bool kFp8 = true;
  static constexpr bool kOneVector = true;  // a group's weights are one vector of bytes (Decode)
  static constexpr int64_t kSegment = 2048;
  static HWY_INLINE void Load(DF df, const T* p, VF v[4]) {
#if HWY_TARGET == HWY_SCALAR
    for (int m = 0; m < 4; ++m) v[m] = LoadE4m3Bits(df, p + m);
#else
    LoadE4m3Quads(df, p, v);
#endif
  }
#if HWY_TARGET != HWY_SCALAR
  // Load's values from a group's bytes already in a register.
  static HWY_INLINE void Decode(DF df, V16 raw, VF v[4]) { DecodeE4m3Quads(df, raw, v); }
#endif
  static HWY_INLINE void Permute(DF df, const float* x, float* xs) {
#if HWY_TARGET == HWY_SCALAR
    std::copy_n(x, 4, xs);
#else
    const int64_t N = int64_t(hn::Lanes(df));
    VF v0, v1, v2, v3;
    hn::LoadInterleaved4(df, x, v0, v1, v2, v3);
    hn::StoreU(v0, df, xs);
    hn::StoreU(v1, df, xs + N);
    hn::StoreU(v2, df, xs + 2 * N);
    hn::StoreU(v3, df, xs + 3 * N);
#endif
  }
};

// BF16: two chains, lane l of chain q = column 2l + q: the low half of each 32-bit lane shifted up
// is one f32 (even columns), the high half masked the next (no widening instruction).
struct Bf16Layout {
  using T = uint16_t;
  static constexpr int kC = 2, kDepth = 1;
  static constexpr bool kFp8 = false;
  static constexpr bool kOneVector = true;
  static constexpr int64_t kSegment = 2048;
  static HWY_INLINE void Load(DF df, const T* p, VF v[kC]) {
#if HWY_TARGET == HWY_SCALAR
    for (int q = 0; q < kC; ++q) v[q] = hn::Set(df, bf16_to_f32(p[q]));
#else
    Decode(df, hn::LoadU(D16(), reinterpret_cast<const int16_t*>(p)), v);
#endif
  }
#if HWY_TARGET != HWY_SCALAR
  static HWY_INLINE void Decode(DF df, V16 raw, VF v[kC]) {
    const hn::RebindToUnsigned<DF> du;
    const auto u = hn::BitCast(du, raw);
    v[0] = hn::BitCast(df, hn::ShiftLeft<16>(u));
    v[1] = hn::BitCast(df, hn::And(u, hn::Set(du, 0xFFFF0000u)));
  }
#endif
  static HWY_INLINE void Permute(DF df, const float* x, float* xs) {
#if HWY_TARGET == HWY_SCALAR
    std::copy_n(x, kC, xs);
#else
    const int64_t N = int64_t(hn::Lanes(df));
    VF even, odd;
    hn::LoadInterleaved2(df, x, even, odd);
    hn::StoreU(even, df, xs);
    hn::StoreU(odd, df, xs + N);
#endif
  }
};

// F16 and F32: chains of consecutive vectors (lane l of chain q = column q·N + l), two for F16.
struct F16Layout {
  using T = uint16_t;
  static constexpr int kC = 2, kDepth = 1;
  static constexpr bool kFp8 = false;
  static constexpr bool kOneVector = false;
  static constexpr int64_t kSegment = 2048;
  static HWY_INLINE void Load(DF df, const T* p, VF v[kC]) {
    const hn::Rebind<hwy::float16_t, DF> dh;
    const int64_t N = int64_t(hn::Lanes(df));
    const auto* h = reinterpret_cast<const hwy::float16_t*>(p);
    for (int q = 0; q < kC; ++q) v[q] = hn::PromoteTo(df, hn::LoadU(dh, h + q * N));
  }
  static HWY_INLINE void Permute(DF df, const float* x, float* xs) { std::copy_n(x, kC * hn::Lanes(df), xs); }
};
// F32 takes four chains where there are 32 vector registers: 4-bit packed weights (packed_int-inl.h)
// are summed in this layout, and one token's sums over two chains waited on the FMA latency (4-bit
// rows in L2, one token, one Zen 5 core: ~22 G weights/s over two chains, ~31 over four; the probe's
// bandwidth at two threads needs ~24 per core). With 16 registers F32 keeps two: four chains
// decoded AVX2 4-bit rows no faster for one token and ~0.6x as fast for four (two per sweep).
struct F32Layout {
  using T = float;
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
  static constexpr int kC = 4, kDepth = 1;
#else
  static constexpr int kC = 2, kDepth = 1;
#endif
  static constexpr bool kFp8 = false;
  static constexpr bool kOneVector = false;
  static constexpr int64_t kSegment = 2048;
  static HWY_INLINE void Load(DF df, const T* p, VF v[kC]) {
    const int64_t N = int64_t(hn::Lanes(df));
    for (int q = 0; q < kC; ++q) v[q] = hn::LoadU(df, p + q * N);
  }
  static HWY_INLINE void Permute(DF df, const float* x, float* xs) { std::copy_n(x, kC * hn::Lanes(df), xs); }
};

// Weight rows read in place from a safetensors mapping start wherever the header and the tensors
// before them end: bench-m's FP8 tensors all sit 48 bytes past a 64-byte boundary, its BF16 cast's
// 56, models/default's 40. Every unaligned vector load of such a row then straddles two cache
// lines, and the decode kernel streamed FP8 rows at ~19 GB/s per Zen 5 core against 33-35 GB/s for
// the same rows 64-byte aligned (sum_f32 read ~40 either way). RealignedGroups reads a row's
// groups with aligned loads only and moves each group's bytes into place in a register: one
// two-table permute of 16-bit lanes (vpermt2w, AVX-512BW) per 64 bytes, the previous line kept.
// The same bytes land in the same lanes, so every sum keeps its bits. Rows at an odd byte offset
// (none in the checkpoints here) keep unaligned loads.
//
// Each aligned load reads a cache line that holds at least one byte of the groups asked for, so
// it never touches a page the row does not. It does read bytes outside the row, which
// AddressSanitizer reports: sanitized builds keep unaligned loads.
#if defined(__SANITIZE_ADDRESS__)
#define DSV3_NO_REALIGNED_LOADS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DSV3_NO_REALIGNED_LOADS 1
#endif
#endif
#undef DSV3_REALIGNED_LOADS  // defined per target (this file is included once per target)
#if HWY_TARGET <= HWY_AVX3 && !defined(DSV3_NO_REALIGNED_LOADS)
#define DSV3_REALIGNED_LOADS 1
template <class L>
class RealignedGroups {
 public:
  // True where a row starting at p is read this way: 2-byte but not 64-byte aligned.
  static HWY_INLINE bool Applies(const void* p) {
    const auto o = reinterpret_cast<uintptr_t>(p) & 63;
    return o != 0 && o % 2 == 0;
  }
  // p: the first group's weights (Applies(p)).
  explicit HWY_INLINE RealignedGroups(const typename L::T* p) {
    const auto o = int16_t(reinterpret_cast<uintptr_t>(p) & 63);
    line_ = reinterpret_cast<const uint8_t*>(p) - o;
    cur_ = _mm512_load_si512(line_);
    // Lane l of the group is 16-bit lane l + o/2 of (this line, next line); index bit 5 picks the
    // next line.
    idx_ = _mm512_add_epi16(_mm512_set_epi16(31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14,
                                             13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                            _mm512_set1_epi16(int16_t(o / 2)));
  }
  // The next group's vectors, as L::Load of it would give them.
  HWY_INLINE void Next(DF df, VF* v) {
    line_ += 64;
    const __m512i next = _mm512_load_si512(line_);
    L::Decode(df, V16{_mm512_permutex2var_epi16(cur_, idx_, next)}, v);
    cur_ = next;
  }

 private:
  const uint8_t* line_;
  __m512i cur_, idx_;
};
#endif

template <class L>
HWY_INLINE int64_t GroupWidth(DF df) {
  return L::kC * L::kDepth * int64_t(hn::Lanes(df));
}

// Loads a partial last group: the `len` weights at p, zeros after them.
template <class L>
HWY_INLINE void LoadTail(DF df, const typename L::T* p, int64_t len, VF* v) {
  constexpr int64_t kMaxG = L::kC * L::kDepth * int64_t(hn::MaxLanes(DF()));
  typename L::T tmp[kMaxG] = {};
  std::memcpy(tmp, p, size_t(len) * sizeof(typename L::T));
  L::Load(df, tmp, v);
}

// Step 3 for one token's segment x[0 .. len): xq[0 .. steps·G) = the activations in load order,
// zeros past len; FP8 times 2^e; then, where srow is given (the scale_inv row of the weight's
// 128-row block, from the segment's first column), each group times its block's scale. Returns
// 2^(120 - e) for FP8 (step 6), else 1. The GEMM packs with srow = null and multiplies by the
// scales per row block later: the same two roundings.
template <class L>
HWY_INLINE double PrepSegment(DF df, const float* x, int64_t len, const float* srow, float* xq) {
  const int64_t N = int64_t(hn::Lanes(df)), G = GroupWidth<L>(df), full = len / G * G;
  for (int64_t c = 0; c < full; c += G) L::Permute(df, x + c, xq + c);
  if (full < len) {
    constexpr int64_t kMaxG = L::kC * L::kDepth * int64_t(hn::MaxLanes(DF()));
    float tmp[kMaxG] = {};
    std::copy(x + full, x + len, tmp);
    L::Permute(df, tmp, xq + full);
  }
  const int64_t padded = (len + G - 1) / G * G;
  double unscale = 1.0;
  if constexpr (L::kFp8) {
    // k so that max |x| · 2^k is about 2^100: weights times 2^-120 times the scaled x then stay far
    // from both the f32 subnormal range and overflow, whatever the activations' magnitude.
    VF vmax = hn::Zero(df);
    for (int64_t c = 0; c < padded; c += N) vmax = hn::Max(vmax, hn::Abs(hn::LoadU(df, xq + c)));
    int e = 0;
    std::frexp(hn::GetLane(hn::MaxOfLanes(df, vmax)), &e);  // max < 2^e
    const int k = std::clamp(100 - e, -126, 127);
    const VF vk = hn::Set(df, std::ldexp(1.0f, k));
    for (int64_t c = 0; c < padded; c += N) hn::StoreU(hn::Mul(hn::LoadU(df, xq + c), vk), df, xq + c);
    unscale = std::ldexp(1.0, 120 - k);
  }
  if (srow != nullptr)
    for (int64_t c = 0; c < padded; c += G) {
      const VF vs = hn::Set(df, srow[c / kFp8BlockSize]);
      for (int64_t i = 0; i < G; i += N) hn::StoreU(hn::Mul(hn::LoadU(df, xq + c + i), vs), df, xq + c + i);
    }
  return unscale;
}

// Step 5 for one token's chain vectors.
template <int kC>
HWY_INLINE float ChainSum(DF df, const VF* a) {
  if constexpr (kC == 4) return (Fold(df, a[0]) + Fold(df, a[1])) + (Fold(df, a[2]) + Fold(df, a[3]));
  if constexpr (kC == 2) return Fold(df, a[0]) + Fold(df, a[1]);
  return Fold(df, a[0]);
}

}  // namespace HWY_NAMESPACE
}  // namespace dsv3::cpu
HWY_AFTER_NAMESPACE();

#endif  // DSV3_BACKENDS_CPU_DOT_ORDER_INL_H_
