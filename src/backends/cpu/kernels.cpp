// Highway kernels for kernels.h, compiled once per target by foreach_target.h.
//
// FP8 e4m3 decodes exactly by moving its bits into a wider float's bit pattern. Two ways:
// - f16 (dequantisation, several tokens): sign-extend the byte to 16 bits, shift left by 7 and keep
//   the sign and the low 7 bits (mask 0xBF80): the f16 with exponent field 0eeee and mantissa
//   mmm0000000 is the e4m3 value times 2^-8 (subnormals included: both formats put them at
//   exponent field 0), which F16C / AVX-512 widen to f32; the 2^8 goes into the block scale.
// - f32 (the decode kernels, tiles of FP8 in prefill): sign-extend the byte to 32 bits, shift
//   left by 20 and keep the sign and bits 26..20 (mask 0x87F00000): the f32 with exponent field
//   0000eeee is the e4m3 value times 2^-120 (e4m3 subnormals become f32 subnormals, which multiply
//   exactly). The products stay clear of the subnormal range because x is scaled up first (see
//   DotRowsFp8). No conversion instruction at all: on Zen 4, vcvtph2ps zmm issues once per ~3
//   cycles and capped the f16 route at ~5.5 weights per cycle per core; the f32 route runs ~6.5
//   (in L2), and ~8 with four vectors' bytes moved into place together (LoadE4m3Quads).
// A 256-entry table gather measured 5-6x slower than either.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "backends/cpu/kernels.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "backends/cpu/kernels.h"
#include "base/dtype.h"
#include "base/error.h"

HWY_BEFORE_NAMESPACE();
namespace dsv3::cpu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// The one-token decode kernels take one row at a time, which keeps each thread on a single
// sequential stream: 4 rows in lockstep (4 streams one row apart) decoded bench-m 25-35% slower
// here (FP8 ~23 vs ~29 tok/s, BF16 ~19 vs ~26 tok/s at 2 threads, alternating runs).

// Software prefetch of weight rows (8-24 KiB ahead, per kernel) goes to L2, not L1 (prefetcht1;
// GCC's locality 2): the row window plus the activations would fill Zen 4's 32 KiB L1, evicting
// lines before their use. With a 24 KiB window, the one-token FP8 kernel streamed 1408x2048
// matrices from memory at 91% of the bandwidth probe into L2 against 75% into L1 (2 threads,
// alternating, standalone harness).
HWY_INLINE void PrefetchL2(const void* p) { __builtin_prefetch(p, 0, 2); }

// N e4m3 bytes -> f32 values times 2^-8 (exact).
HWY_INLINE VF LoadE4m3(DF df, const uint8_t* p) {
  const hn::Rebind<int8_t, DF> d8;
  const hn::Rebind<int16_t, DF> d16;
  const hn::Rebind<hwy::float16_t, DF> dh;
  auto v = hn::PromoteTo(d16, hn::LoadU(d8, reinterpret_cast<const int8_t*>(p)));
  v = hn::And(hn::ShiftLeft<7>(v), hn::Set(d16, static_cast<int16_t>(0xBF80)));
  return hn::PromoteTo(df, hn::BitCast(dh, v));
}

HWY_INLINE VF LoadBf16(DF df, const uint16_t* p) {
  const hn::RebindToUnsigned<DF> du32;
  const hn::Rebind<uint16_t, DF> du16;
  return hn::BitCast(df, hn::ShiftLeft<16>(hn::PromoteTo(du32, hn::LoadU(du16, p))));
}

HWY_INLINE VF LoadF16(DF df, const uint16_t* p) {
  const hn::Rebind<hwy::float16_t, DF> dh;
  return hn::PromoteTo(df, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(p)));
}

// One dtype's element access: vector load (values times `kPre`), scalar load (true value).
struct Fp8Access {
  static constexpr float kPre = 256.0f;  // undoes the 2^-8 of LoadE4m3
  using T = uint8_t;
  static VF Load(DF df, const T* p) { return LoadE4m3(df, p); }
  static float Scalar(const T* p) { return e4m3_to_f32(*p); }
};
struct Bf16Access {
  static constexpr float kPre = 1.0f;
  using T = uint16_t;
  static VF Load(DF df, const T* p) { return LoadBf16(df, p); }
  static float Scalar(const T* p) { return bf16_to_f32(*p); }
};
struct F16Access {
  static constexpr float kPre = 1.0f;
  using T = uint16_t;
  static VF Load(DF df, const T* p) { return LoadF16(df, p); }
  static float Scalar(const T* p) { return f16_to_f32(*p); }
};
struct F32Access {
  static constexpr float kPre = 1.0f;
  using T = float;
  static VF Load(DF df, const T* p) { return hn::LoadU(df, p); }
  static float Scalar(const T* p) { return *p; }
};

// Scale of block (r / 128, b) times A::kPre; 1 for unscaled dtypes.
template <class A>
HWY_INLINE float BlockScale(const Weight& w, int64_t r, int64_t b) {
  if (w.scale_inv == nullptr) return 1.0f;
  return w.scale_inv[(r / kFp8BlockSize) * w.scale_cols() + b] * A::kPre;
}

// kT tokens against rows [r0, r1). Columns go in 128-wide blocks (the FP8 scale blocks); each
// block's partial sums are scaled once.
template <class A, int kT>
HWY_INLINE void DotRows(const Weight& w, int64_t r0, int64_t r1, const float* x, int64_t x_stride, float* y,
                        int64_t y_stride) {
  const DF df;
  const int64_t N = int64_t(hn::Lanes(df)), cols = w.cols;
  const auto* base = static_cast<const typename A::T*>(w.data);
  for (int64_t r = r0; r < r1; ++r) {
    const auto* wr = base + r * cols;
    VF total[kT];
    float tail[kT];
    for (int j = 0; j < kT; ++j) total[j] = hn::Zero(df), tail[j] = 0.0f;
    for (int64_t c0 = 0, b = 0; c0 < cols; c0 += kFp8BlockSize, ++b) {
      const int64_t c1 = std::min(cols, c0 + kFp8BlockSize);
      const float s = BlockScale<A>(w, r, b);
      int64_t c = c0;
      VF part[kT];
      for (int j = 0; j < kT; ++j) part[j] = hn::Zero(df);
      if constexpr (kT == 1) {
        // One token: four independent chains hide the FMA latency.
        VF p1 = hn::Zero(df), p2 = hn::Zero(df), p3 = hn::Zero(df);
        for (; c + 4 * N <= c1; c += 4 * N) {
          part[0] = hn::MulAdd(A::Load(df, wr + c), hn::LoadU(df, x + c), part[0]);
          p1 = hn::MulAdd(A::Load(df, wr + c + N), hn::LoadU(df, x + c + N), p1);
          p2 = hn::MulAdd(A::Load(df, wr + c + 2 * N), hn::LoadU(df, x + c + 2 * N), p2);
          p3 = hn::MulAdd(A::Load(df, wr + c + 3 * N), hn::LoadU(df, x + c + 3 * N), p3);
        }
        part[0] = hn::Add(hn::Add(part[0], p1), hn::Add(p2, p3));
      }
      for (; c + N <= c1; c += N) {
        const VF wv = A::Load(df, wr + c);
        for (int j = 0; j < kT; ++j) part[j] = hn::MulAdd(wv, hn::LoadU(df, x + j * x_stride + c), part[j]);
      }
      const VF vs = hn::Set(df, s);
      for (int j = 0; j < kT; ++j) total[j] = hn::MulAdd(part[j], vs, total[j]);
      if (c < c1) {
        const float st = s / A::kPre;
        for (; c < c1; ++c) {
          const float wv = A::Scalar(wr + c) * st;
          for (int j = 0; j < kT; ++j) tail[j] += wv * x[j * x_stride + c];
        }
      }
    }
    for (int j = 0; j < kT; ++j) y[j * y_stride + (r - r0)] = hn::GetLane(hn::SumOfLanes(df, total[j])) + tail[j];
  }
}

// One token against rows [r0, r1), columns [s0, s1) (s0 a multiple of 128): a 128-column block
// fully unrolled with two chains, each block's sum scaled once, software prefetch ~24 KiB ahead.
// y gets the segment's sums (s0 == 0) or adds them. The decode kernel of F16 and F32 rows, and of
// BF16 rows that DotRowsBf16One does not take. Returns false (nothing done) where a 128-column
// block is not a whole number of vector pairs.
template <class A>
HWY_INLINE bool DotRowSegment(const Weight& w, int64_t r0, int64_t r1, const float* x, float* y, int64_t s0,
                              int64_t s1) {
  const DF df;
  constexpr int64_t kB = kFp8BlockSize;
  const int64_t N = int64_t(hn::Lanes(df)), cols = w.cols, full = s0 + (s1 - s0) / kB * kB;
  if (kB % (2 * N) != 0) return false;
  const auto* base = static_cast<const typename A::T*>(w.data);
  const int64_t ahead = std::max<int64_t>(1, 24576 / int64_t((s1 - s0) * sizeof(typename A::T))) * cols;
  for (int64_t r = r0; r < r1; ++r) {
    const auto* wr = base + r * cols;
    VF t = hn::Zero(df);
    int64_t b = s0 / kB;
    for (int64_t c0 = s0; c0 < full; c0 += kB, ++b) {
      VF a = hn::Zero(df), a2 = hn::Zero(df);
      // Lines of rows further down at this block: without it, FP8 rows streamed from memory at
      // ~6 GB/s per core against ~9.5 GB/s with it, here (the decode is slow enough per byte
      // that the hardware prefetcher alone keeps too few lines in flight).
      for (int64_t off = 0; off < kB * int64_t(sizeof(typename A::T)); off += 64)
        PrefetchL2(reinterpret_cast<const uint8_t*>(wr + ahead + c0) + off);
#pragma GCC unroll 16
      for (int64_t c = c0; c < c0 + kB; c += 2 * N) {
        a = hn::MulAdd(A::Load(df, wr + c), hn::LoadU(df, x + c), a);
        a2 = hn::MulAdd(A::Load(df, wr + c + N), hn::LoadU(df, x + c + N), a2);
      }
      t = hn::MulAdd(hn::Add(a, a2), hn::Set(df, BlockScale<A>(w, r, b)), t);
    }
    float tail = 0.0f;
    if (full < s1) {
      // The last, partial block: vectors then scalars (prefetched too: rows of 1000 BF16 columns
      // decoded at ~50% of the probe without it, their last 208 bytes missing every row).
      for (int64_t off = 0; off < (s1 - full) * int64_t(sizeof(typename A::T)); off += 64)
        PrefetchL2(reinterpret_cast<const uint8_t*>(wr + ahead + full) + off);
      VF a = hn::Zero(df);
      int64_t c = full;
      for (; c + N <= s1; c += N) a = hn::MulAdd(A::Load(df, wr + c), hn::LoadU(df, x + c), a);
      const float sb = BlockScale<A>(w, r, b);
      t = hn::MulAdd(a, hn::Set(df, sb), t);
      for (; c < s1; ++c) tail += A::Scalar(wr + c) * (sb / A::kPre) * x[c];
    }
    const float sum = hn::GetLane(hn::SumOfLanes(df, t)) + tail;
    y[r - r0] = s0 == 0 ? sum : y[r - r0] + sum;
  }
  return true;
}

// e4m3 bytes -> f32 values times 2^-120 (exact, see the top of the file).
HWY_INLINE VF LoadE4m3Bits(DF df, const uint8_t* p) {
  const hn::RebindToSigned<DF> di;
  const hn::Rebind<int8_t, DF> d8;
  const auto v = hn::PromoteTo(di, hn::LoadU(d8, reinterpret_cast<const int8_t*>(p)));
  return hn::BitCast(df, hn::And(hn::ShiftLeft<20>(v), hn::Set(di, static_cast<int32_t>(0x87F00000u))));
}

// The FP8 decode kernel: kT (1-4) tokens against rows [r0, r1),
// y[j * y_stride + r - r0] = Σ_c W[r, c] x[j * x_stride + c].
// Each token's x is scaled by 2^k_j into a stack buffer, a segment of columns at a time (8192 / kT
// rounded to whole blocks; only matrices wider than that visit their rows more than once), k_j
// chosen so that max |x_j| · 2^k_j is about 2^100: weights times 2^-120 times the scaled x then
// stay far from both the f32 subnormal range and overflow, whatever the activations' magnitude.
// Each 128-column block sum is scaled by its scale_inv, and a row's sum by 2^(120 - k_j) (a power
// of two: exact).
constexpr int64_t kFp8Segment = 8192;
// Widest rows DotRowsFp8One takes.
constexpr int64_t kFp8OneMaxCols = 4096;

// xs[0 .. len) = x[0 .. len) times 2^k, k chosen so that max |x| · 2^k is about 2^100 (see
// DotRowsFp8); returns 2^(120 - k), the factor that takes a row sum back to true units.
HWY_INLINE double ScaleActivations(DF df, const float* x, int64_t len, float* xs) {
  const int64_t N = int64_t(hn::Lanes(df));
  VF vmax = hn::Zero(df);
  int64_t c = 0;
  for (; c + N <= len; c += N) vmax = hn::Max(vmax, hn::Abs(hn::LoadU(df, x + c)));
  float amax = hn::GetLane(hn::MaxOfLanes(df, vmax));
  for (; c < len; ++c) amax = std::max(amax, std::fabs(x[c]));
  int e = 0;
  std::frexp(amax, &e);  // amax < 2^e
  const int k = std::clamp(100 - e, -126, 127);
  const VF vx = hn::Set(df, std::ldexp(1.0f, k));
  for (c = 0; c + N <= len; c += N) hn::StoreU(hn::Mul(hn::LoadU(df, x + c), vx), df, xs + c);
  for (; c < len; ++c) xs[c] = std::ldexp(x[c], k);
  return std::ldexp(1.0, 120 - k);
}

// 4N e4m3 bytes -> four f32 vectors, each value times 2^-120 (exact, as LoadE4m3Bits), lane j
// of q[k] holding byte 4j + k. The bytes are read as 16-bit lanes and an arithmetic shift right
// by 4 puts a lane's high byte where LoadE4m3Bits' shift puts it (sign at bit 15, eeeemmm at bits
// 10..4); the low byte gets there after a shift left by 8. Masked at 32 bits, the upper 16-bit
// lane of each 32-bit lane is then that f32's bit pattern, and the lower one after a shift left
// by 16. 5 shifts and 4 ANDs for 4N weights against 4 widenings, 4 shifts and 4 ANDs: on Zen 4
// the widenings and shifts share two pipes, and this decoded FP8 rows in L2 ~25% faster (29 vs
// 23 weights/ns on one core). The activations go in the same order (ScaleActivationsQuads).
#if HWY_TARGET != HWY_SCALAR  // one-lane vectors have no 16-bit halves
HWY_INLINE void LoadE4m3Quads(DF df, const uint8_t* p, VF q[4]) {
  const hn::RebindToSigned<DF> di;
  const hn::Repartition<int16_t, DF> d16;
  const auto v = hn::LoadU(d16, reinterpret_cast<const int16_t*>(p));
  const auto hi = hn::BitCast(di, hn::ShiftRight<4>(v));                   // bytes 4j + 3 and 4j + 1
  const auto lo = hn::BitCast(di, hn::ShiftRight<4>(hn::ShiftLeft<8>(v)));  // bytes 4j + 2 and 4j
  const auto m = hn::Set(di, static_cast<int32_t>(0x87F00000u));
  q[0] = hn::BitCast(df, hn::And(hn::ShiftLeft<16>(lo), m));
  q[1] = hn::BitCast(df, hn::And(hn::ShiftLeft<16>(hi), m));
  q[2] = hn::BitCast(df, hn::And(lo, m));
  q[3] = hn::BitCast(df, hn::And(hi, m));
}

// ScaleActivations, with the columns below quad_len (a multiple of 4N) in LoadE4m3Quads' order:
// within each group of 4N columns, xs[g + k * N + j] = x[g + 4j + k] times 2^k.
HWY_INLINE double ScaleActivationsQuads(DF df, const float* x, int64_t len, int64_t quad_len, float* xs) {
  const int64_t N = int64_t(hn::Lanes(df));
  const double unscale = ScaleActivations(df, x, len, xs);
  for (int64_t g = 0; g < quad_len; g += 4 * N) {
    VF v0, v1, v2, v3;
    hn::LoadInterleaved4(df, xs + g, v0, v1, v2, v3);
    hn::Store(v0, df, xs + g);
    hn::Store(v1, df, xs + g + N);
    hn::Store(v2, df, xs + g + 2 * N);
    hn::Store(v3, df, xs + g + 3 * N);
  }
  return unscale;
}
#endif

template <int kT>
HWY_INLINE void DotRowsFp8(const Weight& w, int64_t r0, int64_t r1, const float* x, int64_t x_stride, float* y,
                           int64_t y_stride) {
  const DF df;
  constexpr int64_t kB = kFp8BlockSize, kSeg = kFp8Segment / kT / kB * kB;
  // Several tokens: whole blocks read by LoadE4m3Quads, kT x 4 accumulators, which fit the
  // registers of AVX-512 for any kT and of 16-register targets for kT = 2 (the others read a
  // vector at a time with kC chains). 2 tokens in L2 on one Zen 4 core: ~18% more weights per ns.
#if HWY_TARGET == HWY_SCALAR
  constexpr bool kQuads = false;
#elif HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
  constexpr bool kQuads = kT >= 2;  // one token: DotRowsFp8One, or wide rows (see there)
#else
  constexpr bool kQuads = kT == 2;
#endif
  constexpr int kC = kQuads ? 4 : kT == 1 ? 4 : kT == 2 ? 2 : 1;  // independent chains per token
  const int64_t N = int64_t(hn::Lanes(df)), cols = w.cols, sc = w.scale_cols();
  const auto* base = static_cast<const uint8_t*>(w.data);
  // Software prefetch ~24 KiB ahead: the hardware prefetcher alone keeps too few lines in flight
  // for a kernel this slow per byte (FP8 rows streamed at ~6 vs ~9.5 GB/s per core with the f16
  // route here; ~4% with this one).
  const int64_t ahead = std::max<int64_t>(1, 24576 / cols) * cols;
  alignas(64) float xs[kT * kSeg];
  double unscale[kT];
  for (int64_t s0 = 0; s0 < cols; s0 += kSeg) {
    const int64_t len = std::min(cols, s0 + kSeg) - s0;
    const int64_t full = kB % (kC * N) == 0 ? len / kB * kB : 0;
    for (int j = 0; j < kT; ++j) {
      if constexpr (kQuads)
        unscale[j] = ScaleActivationsQuads(df, x + j * x_stride + s0, len, full, xs + j * kSeg);
      else
        unscale[j] = ScaleActivations(df, x + j * x_stride + s0, len, xs + j * kSeg);
    }
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* wr = base + r * cols + s0;
      const float* srow = w.scale_inv + (r / kB) * sc + s0 / kB;
      VF t[kT];
      float tail[kT];
      for (int j = 0; j < kT; ++j) t[j] = hn::Zero(df), tail[j] = 0.0f;
      int64_t c0 = 0;
      for (; c0 < full; c0 += kB) {  // whole blocks: fixed trip counts, fully unrolled
#pragma GCC unroll 4
        for (int64_t off = 0; off < kB; off += 64) PrefetchL2(wr + ahead + c0 + off);
        VF a[kT][kC];
        for (int j = 0; j < kT; ++j)
          for (int q = 0; q < kC; ++q) a[j][q] = hn::Zero(df);
#pragma GCC unroll 16
        for (int64_t cc = c0; cc < c0 + kB; cc += kC * N) {
          VF wv[kC];
          if constexpr (kQuads)
            LoadE4m3Quads(df, wr + cc, wv);
          else
            for (int q = 0; q < kC; ++q) wv[q] = LoadE4m3Bits(df, wr + cc + q * N);
          for (int q = 0; q < kC; ++q)
            for (int j = 0; j < kT; ++j) a[j][q] = hn::MulAdd(wv[q], hn::Load(df, xs + j * kSeg + cc + q * N), a[j][q]);
        }
        const VF vs = hn::Set(df, srow[c0 / kB]);
        for (int j = 0; j < kT; ++j) {
          VF sum = a[j][0];
          for (int q = 1; q < kC; ++q) sum = hn::Add(sum, a[j][q]);
          t[j] = hn::MulAdd(sum, vs, t[j]);
        }
      }
      for (; c0 < len; c0 += kB) {  // the last, partial block (or every block on tiny vectors)
        const int64_t c1 = std::min(len, c0 + kB);
        for (int64_t off = 0; off < c1 - c0; off += 64) PrefetchL2(wr + ahead + c0 + off);
        VF a[kT];
        for (int j = 0; j < kT; ++j) a[j] = hn::Zero(df);
        int64_t cc = c0;
        for (; cc + N <= c1; cc += N) {
          const VF wv = LoadE4m3Bits(df, wr + cc);
          for (int j = 0; j < kT; ++j) a[j] = hn::MulAdd(wv, hn::LoadU(df, xs + j * kSeg + cc), a[j]);
        }
        for (; cc < c1; ++cc) {
          const float wv = e4m3_to_f32(wr[cc]) * srow[c0 / kB];
          for (int j = 0; j < kT; ++j) tail[j] += wv * x[j * x_stride + s0 + cc];
        }
        const VF vs = hn::Set(df, srow[c0 / kB]);
        for (int j = 0; j < kT; ++j) t[j] = hn::MulAdd(a[j], vs, t[j]);
      }
      for (int j = 0; j < kT; ++j) {
        const float sum = float(double(hn::GetLane(hn::SumOfLanes(df, t[j]))) * unscale[j]) + tail[j];
        float& out = y[j * y_stride + (r - r0)];
        out = s0 == 0 ? sum : out + sum;
      }
    }
  }
}

// One token, rows of whole blocks up to kFp8OneMaxCols wide: DotRowsFp8<1> with the weights
// read by LoadE4m3Quads, as one plain loop nest (the generic template form streamed FP8 rows
// from memory ~20% slower here: same inner instructions; standalone harness over 128 MB of rows,
// single thread, alternating runs).
HWY_INLINE void DotRowsFp8One(const Weight& w, int64_t r0, int64_t r1, const float* x, float* y) {
#if HWY_TARGET == HWY_SCALAR
  return DotRowsFp8<1>(w, r0, r1, x, 0, y, 0);
#else
  const DF df;
  constexpr int64_t kB = kFp8BlockSize;
  const int64_t N = int64_t(hn::Lanes(df)), cols = w.cols, sc = w.scale_cols();
  // Rows wider than 4096 columns take DotRowsFp8<1> (one vector's bytes at a time, 24 KiB
  // prefetch): 7168-column rows streamed at 0.71 / 0.97 of the probe there (one / two threads)
  // and at 0.55-0.65 / 0.64-0.82 here, whole or in 4096-column segments (standalone harness).
  if (cols > kFp8OneMaxCols || cols % kB != 0 || kB % (4 * N) != 0) return DotRowsFp8<1>(w, r0, r1, x, 0, y, 0);
  const auto* base = static_cast<const uint8_t*>(w.data);
  // Prefetch ~8 KiB ahead: with this kernel's faster decode, bench-m's --fp8-head decode read
  // 0.88 of the probe at two threads against 0.85 with 24 KiB (7 alternating engine runs; one
  // thread the same). Without any prefetch it streams at a third of that.
  const int64_t ahead = std::max<int64_t>(1, 8192 / cols) * cols;
  alignas(64) float xs[kFp8OneMaxCols];
  const double unscale = ScaleActivationsQuads(df, x, cols, cols, xs);
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* wr = base + r * cols;
    const float* srow = w.scale_inv + (r / kB) * sc;
    VF t = hn::Zero(df);
    for (int64_t c0 = 0, b = 0; c0 < cols; c0 += kB, ++b) {
      PrefetchL2(wr + ahead + c0);
      PrefetchL2(wr + ahead + c0 + 64);
      VF a0 = hn::Zero(df), a1 = hn::Zero(df), a2 = hn::Zero(df), a3 = hn::Zero(df);
      for (int64_t c = c0; c < c0 + kB; c += 4 * N) {
        VF q[4];
        LoadE4m3Quads(df, wr + c, q);
        a0 = hn::MulAdd(q[0], hn::Load(df, xs + c), a0);
        a1 = hn::MulAdd(q[1], hn::Load(df, xs + c + N), a1);
        a2 = hn::MulAdd(q[2], hn::Load(df, xs + c + 2 * N), a2);
        a3 = hn::MulAdd(q[3], hn::Load(df, xs + c + 3 * N), a3);
      }
      t = hn::MulAdd(hn::Add(hn::Add(a0, a1), hn::Add(a2, a3)), hn::Set(df, srow[b]), t);
    }
    y[r - r0] = float(double(hn::GetLane(hn::SumOfLanes(df, t))) * unscale);
  }
#endif
}

// Columns per pass of the 16-bit one-token kernel: rows wider than this are summed a segment
// at a time, so that the segment of x (16 KiB) stays in L1 beside the weight stream. BF16 rows of
// 7168 columns (x 28 KiB) streamed at 51% of the probe on one thread and 77% on two, against 74%
// and 92% in 4096-column segments (standalone harness; 2048: the same; FP8 rows, half the bytes
// per x value, gained nothing). The segments go over blocks of 16 rows, not all of a thread's
// rows: over all rows, a 7168-column BF16 lm_head decoded no faster in the engine (its pages come
// from the page cache, and the data that the hardware prefetches past a segment's end went
// unused); over 16-row blocks the v3-dims FP8 checkpoint's decode went from 60% to ~70% of the
// probe on one thread (4-64 rows measured within noise of each other).
constexpr int64_t kDecodeSegment = 4096, kDecodeSegmentRows = 16;

// Widest rows DotRowsBf16One takes (its reordered copy of x lives on the stack: 128 KiB).
constexpr int64_t kBf16OneMaxCols = 32768;

// One token against BF16 rows without scales, whole 128-column blocks: the 16-bit kernel's
// segments and row blocks (see kDecodeSegment), with the weights read 2N at a time: the
// low half of each 32-bit lane shifted up is one f32 (even columns), the high half masked is
// the next (odd columns), against x reordered the same way (LoadInterleaved2). No software
// prefetch for rows of one segment: with it this kernel streamed ~25% slower from memory on one
// core here (the out-of-order window alone keeps enough lines in flight at this rate; FP8's four
// times the work per line needs it). Standalone harness, 1408x2048 rows from memory: 1.00 of the
// probe on one thread against 0.74 for the widening kernel with prefetch, 1.02 against 0.93 on two.
// Returns false (nothing done) for the shapes it does not take.
HWY_INLINE bool DotRowsBf16One(const Weight& w, int64_t r0, int64_t r1, const float* x, float* y) {
#if HWY_TARGET == HWY_SCALAR
  (void)w, (void)r0, (void)r1, (void)x, (void)y;
  return false;
#else
  const DF df;
  const hn::RebindToUnsigned<DF> du;
  const hn::Repartition<uint16_t, DF> d16;
  constexpr int64_t kB = kFp8BlockSize;
  const int64_t N = int64_t(hn::Lanes(df)), cols = w.cols;
  if (w.scale_inv != nullptr || cols % kB != 0 || kB % (4 * N) != 0 || cols > kBf16OneMaxCols) return false;
  alignas(64) float xp[kBf16OneMaxCols];
  for (int64_t g = 0; g < cols; g += 2 * N) {
    VF even, odd;
    hn::LoadInterleaved2(df, x + g, even, odd);
    hn::Store(even, df, xp + g);
    hn::Store(odd, df, xp + g + N);
  }
  const auto* base = static_cast<const uint16_t*>(w.data);
  const auto high = hn::Set(du, 0xFFFF0000u);
  // Rows wider than a segment are read in 8 KiB pieces, too short for the hardware prefetcher
  // alone: those prefetch the same segment ~24 KiB of rows ahead (7168-column rows streamed at
  // ~0.4 of the probe without it).
  const bool segmented = cols > kDecodeSegment;
  const int64_t ahead = std::max<int64_t>(1, 24576 / (kDecodeSegment * 2)) * cols;
  for (int64_t b0 = r0; b0 < r1; b0 += kDecodeSegmentRows) {
    const int64_t b1 = std::min(r1, b0 + kDecodeSegmentRows);
    for (int64_t s0 = 0; s0 < cols; s0 += kDecodeSegment) {
      const int64_t s1 = std::min(cols, s0 + kDecodeSegment);
      for (int64_t r = b0; r < b1; ++r) {
        const uint16_t* wr = base + r * cols;
        VF t = hn::Zero(df);
        for (int64_t c0 = s0; c0 < s1; c0 += kB) {
          if (segmented)
            for (int64_t off = 0; off < kB * 2; off += 64)
              PrefetchL2(reinterpret_cast<const uint8_t*>(wr + ahead + c0) + off);
          VF a0 = hn::Zero(df), a1 = hn::Zero(df);
#pragma GCC unroll 8
          for (int64_t c = c0; c < c0 + kB; c += 2 * N) {
            const auto v = hn::BitCast(du, hn::LoadU(d16, wr + c));
            a0 = hn::MulAdd(hn::BitCast(df, hn::ShiftLeft<16>(v)), hn::Load(df, xp + c), a0);
            a1 = hn::MulAdd(hn::BitCast(df, hn::And(v, high)), hn::Load(df, xp + c + N), a1);
          }
          t = hn::Add(t, hn::Add(a0, a1));
        }
        const float sum = hn::GetLane(hn::SumOfLanes(df, t));
        y[r - r0] = s0 == 0 ? sum : y[r - r0] + sum;
      }
    }
  }
  return true;
#endif
}

// One token: the decode kernel for the dtype and shape.
template <class A>
HWY_INLINE void DotRowsOne(const Weight& w, int64_t r0, int64_t r1, const float* x, float* y) {
  if constexpr (std::is_same_v<A, Fp8Access>) return DotRowsFp8One(w, r0, r1, x, y);
  if constexpr (std::is_same_v<A, Bf16Access>)
    if (DotRowsBf16One(w, r0, r1, x, y)) return;
  for (int64_t b0 = r0; b0 < r1; b0 += kDecodeSegmentRows) {
    const int64_t b1 = std::min(r1, b0 + kDecodeSegmentRows);
    for (int64_t s0 = 0; s0 < w.cols; s0 += kDecodeSegment)
      if (!DotRowSegment<A>(w, b0, b1, x, y + (b0 - r0), s0, std::min(w.cols, s0 + kDecodeSegment)))
        return DotRows<A, 1>(w, r0, r1, x, 0, y, 1);  // vectors wider than a 128-column block
  }
}

template <class A>
void MatvecRowsT(const Weight& w, int64_t r0, int64_t r1, const float* x, int64_t n, int64_t x_stride, float* y,
                 int64_t y_stride) {
  int64_t i = 0;
  if constexpr (std::is_same_v<A, Fp8Access>) {
    for (; i + 4 <= n; i += 4) DotRowsFp8<4>(w, r0, r1, x + i * x_stride, x_stride, y + i * y_stride, y_stride);
    const float* xi = x + i * x_stride;
    float* yi = y + i * y_stride;
    switch (n - i) {
      case 3: return DotRowsFp8<3>(w, r0, r1, xi, x_stride, yi, y_stride);
      case 2: return DotRowsFp8<2>(w, r0, r1, xi, x_stride, yi, y_stride);
      case 1: return DotRowsFp8One(w, r0, r1, xi, yi);
      default: return;
    }
  }
  for (; i + 4 <= n; i += 4) DotRows<A, 4>(w, r0, r1, x + i * x_stride, x_stride, y + i * y_stride, y_stride);
  const float* xi = x + i * x_stride;
  float* yi = y + i * y_stride;
  switch (n - i) {
    case 3: DotRows<A, 3>(w, r0, r1, xi, x_stride, yi, y_stride); break;
    case 2: DotRows<A, 2>(w, r0, r1, xi, x_stride, yi, y_stride); break;
    case 1: DotRowsOne<A>(w, r0, r1, xi, yi); break;  // one token: y_stride plays no part
    default: break;
  }
}

void MatvecRows(const Weight& w, int64_t r0, int64_t r1, const float* x, int64_t n, int64_t x_stride, float* y,
                int64_t y_stride) {
  switch (w.dtype) {
    case DType::F8_E4M3: return MatvecRowsT<Fp8Access>(w, r0, r1, x, n, x_stride, y, y_stride);
    case DType::BF16: return MatvecRowsT<Bf16Access>(w, r0, r1, x, n, x_stride, y, y_stride);
    case DType::F16: return MatvecRowsT<F16Access>(w, r0, r1, x, n, x_stride, y, y_stride);
    case DType::F32: return MatvecRowsT<F32Access>(w, r0, r1, x, n, x_stride, y, y_stride);
    default: DSV3_CHECK(false, "matvec_rows: unsupported dtype");
  }
}

template <class A>
void MatvecTRowsT(const Weight& w, int64_t r0, int64_t r1, const float* q, float* out) {
  const DF df;
  const int64_t N = int64_t(hn::Lanes(df)), cols = w.cols;
  const auto* base = static_cast<const typename A::T*>(w.data);
  std::fill(out, out + cols, 0.0f);
  for (int64_t r = r0; r < r1; ++r) {
    const auto* wr = base + r * cols;
    for (int64_t c0 = 0, b = 0; c0 < cols; c0 += kFp8BlockSize, ++b) {
      const int64_t c1 = std::min(cols, c0 + kFp8BlockSize);
      const float coef = q[r - r0] * BlockScale<A>(w, r, b);
      const VF vc = hn::Set(df, coef);
      int64_t c = c0;
      for (; c + N <= c1; c += N) hn::StoreU(hn::MulAdd(A::Load(df, wr + c), vc, hn::LoadU(df, out + c)), df, out + c);
      for (; c < c1; ++c) out[c] += A::Scalar(wr + c) * (coef / A::kPre);
    }
  }
}

void MatvecTRows(const Weight& w, int64_t r0, int64_t r1, const float* q, float* out) {
  switch (w.dtype) {
    case DType::F8_E4M3: return MatvecTRowsT<Fp8Access>(w, r0, r1, q, out);
    case DType::BF16: return MatvecTRowsT<Bf16Access>(w, r0, r1, q, out);
    case DType::F16: return MatvecTRowsT<F16Access>(w, r0, r1, q, out);
    case DType::F32: return MatvecTRowsT<F32Access>(w, r0, r1, q, out);
    default: DSV3_CHECK(false, "matvec_t_rows: unsupported dtype");
  }
}

// Exact: (v · 2^-8) · (s · 2^8) rounds the same real product v · s that the reference rounds.
template <class A>
void DequantRowsT(const Weight& w, int64_t r0, int64_t r1, float* out, int64_t out_stride) {
  const DF df;
  const int64_t N = int64_t(hn::Lanes(df)), cols = w.cols;
  const auto* base = static_cast<const typename A::T*>(w.data);
  for (int64_t r = r0; r < r1; ++r) {
    const auto* wr = base + r * cols;
    float* o = out + (r - r0) * out_stride;
    for (int64_t c0 = 0, b = 0; c0 < cols; c0 += kFp8BlockSize, ++b) {
      const int64_t c1 = std::min(cols, c0 + kFp8BlockSize);
      const float s = BlockScale<A>(w, r, b);
      int64_t c = c0;
      if (w.scale_inv) {
        const VF vs = hn::Set(df, s);
        if constexpr (std::is_same_v<A, Fp8Access>) {
          // The conversion-free route (LoadE4m3Bits, value times 2^-120) where the scale times
          // 2^120 stays finite: one rounding of the same real product, ~2x faster than F16C here.
          const float s120 = s / A::kPre * 0x1p120f;
          if (std::isfinite(s120)) {
            const VF v120 = hn::Set(df, s120);
            for (; c + N <= c1; c += N) hn::StoreU(hn::Mul(LoadE4m3Bits(df, wr + c), v120), df, o + c);
          }
        }
        for (; c + N <= c1; c += N) hn::StoreU(hn::Mul(A::Load(df, wr + c), vs), df, o + c);
        for (; c < c1; ++c) o[c] = A::Scalar(wr + c) * (s / A::kPre);
      } else {
        for (; c + N <= c1; c += N) hn::StoreU(A::Load(df, wr + c), df, o + c);
        for (; c < c1; ++c) o[c] = A::Scalar(wr + c);
      }
    }
  }
}

void DequantRows(const Weight& w, int64_t r0, int64_t r1, float* out, int64_t out_stride) {
  switch (w.dtype) {
    case DType::F8_E4M3: return DequantRowsT<Fp8Access>(w, r0, r1, out, out_stride);
    case DType::BF16: return DequantRowsT<Bf16Access>(w, r0, r1, out, out_stride);
    case DType::F16: return DequantRowsT<F16Access>(w, r0, r1, out, out_stride);
    case DType::F32: return DequantRowsT<F32Access>(w, r0, r1, out, out_stride);
    default: DSV3_CHECK(false, "dequant_rows: unsupported dtype");
  }
}

float SumF32(const float* p, int64_t n) {
  const DF df;
  const int64_t N = int64_t(hn::Lanes(df));
  VF a0 = hn::Zero(df), a1 = hn::Zero(df), a2 = hn::Zero(df), a3 = hn::Zero(df);
  int64_t i = 0;
  for (; i + 4 * N <= n; i += 4 * N) {
    a0 = hn::Add(a0, hn::LoadU(df, p + i));
    a1 = hn::Add(a1, hn::LoadU(df, p + i + N));
    a2 = hn::Add(a2, hn::LoadU(df, p + i + 2 * N));
    a3 = hn::Add(a3, hn::LoadU(df, p + i + 3 * N));
  }
  float s = hn::GetLane(hn::SumOfLanes(df, hn::Add(hn::Add(a0, a1), hn::Add(a2, a3))));
  for (; i < n; ++i) s += p[i];
  return s;
}

int64_t CurrentTarget() { return HWY_TARGET; }

}  // namespace HWY_NAMESPACE
}  // namespace dsv3::cpu
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace dsv3::cpu {

HWY_EXPORT(MatvecRows);
HWY_EXPORT(MatvecTRows);
HWY_EXPORT(DequantRows);
HWY_EXPORT(SumF32);
HWY_EXPORT(CurrentTarget);

void matvec_rows(const Weight& w, int64_t r0, int64_t r1, const float* x, int64_t n, int64_t x_stride, float* y,
                 int64_t y_stride) {
  HWY_DYNAMIC_DISPATCH(MatvecRows)(w, r0, r1, x, n, x_stride, y, y_stride);
}
void matvec_t_rows(const Weight& w, int64_t r0, int64_t r1, const float* q, float* out) {
  HWY_DYNAMIC_DISPATCH(MatvecTRows)(w, r0, r1, q, out);
}
void dequant_rows(const Weight& w, int64_t r0, int64_t r1, float* out, int64_t out_stride) {
  HWY_DYNAMIC_DISPATCH(DequantRows)(w, r0, r1, out, out_stride);
}
float sum_f32(const float* p, int64_t n) { return HWY_DYNAMIC_DISPATCH(SumF32)(p, n); }
const char* target_name() { return hwy::TargetName(HWY_DYNAMIC_DISPATCH(CurrentTarget)()); }

}  // namespace dsv3::cpu
#endif
