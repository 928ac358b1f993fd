// Highway kernels for kernels.h, compiled once per target by foreach_target.h.
//
// matvec_rows sums in the order of dot_order-inl.h (shared with the GEMM of gemm.cpp), so that an
// output's bits do not depend on how many tokens a call has or on which path computes it.
//
// FP8 e4m3 decodes exactly by moving its bits into a wider float's bit pattern. Two ways:
// - f16 (matvec_t_rows, dequant_rows where the scale times 2^120 overflows): sign-extend the byte
//   to 16 bits, shift left by 7 and keep the sign and the low 7 bits (mask 0xBF80): the f16 with
//   exponent field 0eeee and mantissa mmm0000000 is the e4m3 value times 2^-8 (subnormals
//   included: both formats put them at exponent field 0), which F16C / AVX-512 widen to f32; the
//   2^8 goes into the block scale.
// - f32 (the matvec kernels, the GEMM's tiles): dot_order-inl.h's LoadE4m3Bits / LoadE4m3Quads,
//   values times 2^-120 with no conversion instruction at all: on Zen 4, vcvtph2ps zmm issues once
//   per ~3 cycles and capped the f16 route at ~5.5 weights per cycle per core; the f32 route runs
//   ~6.5 (in L2), and ~8 with four vectors' bytes moved into place together (LoadE4m3Quads).
// A 256-entry table gather measured 5-6x slower than either.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "backends/cpu/kernels.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

#include "backends/cpu/dot_order-inl.h"
#include "backends/cpu/packed_int-inl.h"

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

// One dtype's element access for matvec_t_rows and dequant_rows: vector load (values times
// `kPre`), scalar load (true value).
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
HWY_INLINE float AccessScale(const Weight& w, int64_t r, int64_t b) {
  if (w.scale_inv == nullptr) return 1.0f;
  return w.scale_inv[(r / kFp8BlockSize) * w.scale_cols() + b] * A::kPre;
}

// ---- matvec_rows: 1-4 tokens against a band of rows, in dot_order-inl.h's order ----
//
// Loop order (which never changes the sums): rows in blocks of kRowsPerPass, each block's row
// range swept in column passes; the one-token kernels take one row at a time, which keeps each
// thread on a single sequential stream: 4 rows in lockstep (4 streams one row apart) decoded
// bench-m 25-35% slower here (FP8 ~23 vs ~29 tok/s, BF16 ~19 vs ~26 tok/s at 2 threads).

// Columns per pass over a block of 16 rows for the 16- and 32-bit layouts: rows wider than this
// are summed a pass at a time, so that the pass's activations (16 KiB) stay in L1 beside the
// weight stream. BF16 rows of 7168 columns (x 28 KiB) streamed at 51% of the probe on one thread
// and 77% on two, against 74% and 92% in 4096-column passes (standalone harness; 2048: the same).
// The passes go over blocks of 16 rows, not all of a thread's rows: over 16-row blocks the
// v3-dims FP8 checkpoint's decode went from 60% to ~70% of the probe on one thread (4-64 rows
// measured within noise of each other). FP8 rows (a quarter of the bytes per activation) go in as
// few passes of at most 8192 columns (32 KiB of activations) as they can, of equal width rounded
// up to whole segments: whole rows up to V3's 7168 columns (passes of 4096 or 6144 measured
// slower), 10944 columns in 6144 + 4800 (one Zen 5 core against sum_f32 over the same buffer:
// whole rows ~0.3, 8192 + 2752 0.65, 6144 + 4800 0.76).
constexpr int64_t kColumnPass = 4096, kFp8ColumnPass = 8192, kRowsPerPass = 16;

// FP8's pass width for rows of `cols` columns (a multiple of the segment).
inline int64_t Fp8PassColumns(int64_t cols, int64_t segment) {
  const int64_t passes = (cols + kFp8ColumnPass - 1) / kFp8ColumnPass, width = (cols + passes - 1) / passes;
  return (width + segment - 1) / segment * segment;
}

// Activations one call prepares at once over all its tokens (a 64 KiB stack buffer): a token's
// whole row up to 16384 columns; wider rows go a chunk of whole segments at a time.
constexpr int64_t kPrepFloats = 16384;

// Software prefetch distance, bytes of rows ahead. The kernels are slow enough per byte that the
// hardware prefetcher alone keeps too few lines in flight: FP8 rows streamed from memory at ~6
// GB/s per core without it against ~9.5 GB/s with it, here. One FP8 token: ~8 KiB (bench-m's
// --fp8-head decode read 0.88 of the probe at two threads against 0.85 with 24 KiB); wider rows
// and several tokens ~24 KiB. One 16-bit token: ~24 KiB too, now that its two chains run over
// whole segments (BF16 rows from memory ~5% slower on one thread and ~8% on two without it; with
// chains reset every 128 columns it had been ~25% faster without); several 16-bit tokens only
// when they sweep rows in column passes (7168-column BF16 rows streamed at ~0.4 of the probe
// without it).
template <class L, int kT>
HWY_INLINE int64_t PrefetchBytes(int64_t cols) {
  if constexpr (L::kFp8) return kT == 1 && cols <= 4096 ? 8192 : 24576;
  return kT == 1 || cols > kColumnPass ? 24576 : 0;
}

// Tokens one sweep over a row segment takes: as many as the registers hold with the layout's
// chains (four tokens' accumulators: 16 of 32 registers with four chains, 8 of 16 with two). A
// sweep takes one row: the chains run over a whole segment, so one token's sums wait on the FMA
// latency when the rows are in cache (BF16 rows in L3 summed at ~0.75 of the speed of chains
// reset per 128 columns), but two rows at a time (the latencies overlapped) streamed rows from
// memory ~5-10% slower at two threads, and memory is where decode reads its weights.
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
constexpr int kRegisters = 32;
#else
constexpr int kRegisters = 16;
#endif
template <class L>
constexpr int kMaxTokensPerSweep() {
  return 4 * L::kC <= kRegisters / 2 ? 4 : 2;
}

// a[j][q] += v[d·kC + q] · xq_j[c + (d·kC + q)·N] for kT tokens, d < kDepth in order.
template <int kC, int kDepth, int kT>
HWY_INLINE void Accumulate(DF df, const VF* v, const float* xq, int64_t stride, int64_t c, VF (*a)[kC]) {
  const int64_t N = int64_t(hn::Lanes(df));
  for (int d = 0; d < kDepth; ++d)
    for (int q = 0; q < kC; ++q)
      for (int j = 0; j < kT; ++j) {
        const int m = d * kC + q;
        a[j][q] = hn::MulAdd(v[m], hn::Load(df, xq + j * stride + c + m * N), a[j][q]);
      }
}

// A row segment's groups in order, read where they are (L::Load); RealignedGroups reads them from
// aligned lines.
template <class L>
class PointerGroups {
 public:
  explicit HWY_INLINE PointerGroups(const typename L::T* p) : p_(p) {}
  HWY_INLINE void Next(DF df, VF* v) {
    L::Load(df, p_, v);
    p_ += GroupWidth<L>(df);
  }

 private:
  const typename L::T* p_;
};

// Accumulate over the whole groups of wr[0 .. len) as `groups` delivers them (the segment's
// first group first), prefetching `ahead` elements ahead (0: none) per 128-column block; returns
// the columns done.
template <class L, int kT, class Groups>
HWY_INLINE int64_t FullGroupSums(DF df, Groups& groups, const typename L::T* wr, int64_t len, const float* xq,
                                 int64_t stride, int64_t ahead, VF (*a)[L::kC]) {
  using T = typename L::T;
  constexpr int kC = L::kC;
  const int64_t G = GroupWidth<L>(df);
  int64_t c = 0;
  for (; c + kFp8BlockSize <= len; c += kFp8BlockSize) {
    if (ahead > 0)
      for (int64_t off = 0; off < kFp8BlockSize * int64_t(sizeof(T)); off += 64)
        PrefetchL2(reinterpret_cast<const uint8_t*>(wr + ahead + c) + off);
#pragma GCC unroll 16
    for (int64_t g = c; g < c + kFp8BlockSize; g += G) {
      VF v[kC * L::kDepth];
      groups.Next(df, v);
      Accumulate<kC, L::kDepth, kT>(df, v, xq, stride, g, a);
    }
  }
  for (; c + G <= len; c += G) {
    VF v[kC * L::kDepth];
    groups.Next(df, v);
    Accumulate<kC, L::kDepth, kT>(df, v, xq, stride, c, a);
  }
  return c;
}

// Steps 2-5 of the order for kT tokens (xq + j · stride: token j's PrepSegment output, aligned)
// over one row segment wr[0 .. len): sums[j]. Prefetches `ahead` elements ahead (0: none) per
// 128-column block.
template <class L, int kT>
HWY_INLINE void SegmentSums(DF df, const typename L::T* wr, int64_t len, const float* xq, int64_t stride,
                            int64_t ahead, float* sums) {
  constexpr int kC = L::kC;
  VF a[kT][kC];
  for (int j = 0; j < kT; ++j)
    for (int q = 0; q < kC; ++q) a[j][q] = hn::Zero(df);
  int64_t c = -1;
#ifdef DSV3_REALIGNED_LOADS
  if constexpr (L::kOneVector) {
    if (RealignedGroups<L>::Applies(wr)) {
      RealignedGroups<L> groups(wr);
      c = FullGroupSums<L, kT>(df, groups, wr, len, xq, stride, ahead, a);
    }
  }
#endif
  if (c < 0) {
    PointerGroups<L> groups(wr);
    c = FullGroupSums<L, kT>(df, groups, wr, len, xq, stride, ahead, a);
  }
  if (c < len) {  // a partial last group
    VF v[kC * L::kDepth];
    LoadTail<L>(df, wr + c, len - c, v);
    Accumulate<kC, L::kDepth, kT>(df, v, xq, stride, c, a);
  }
  for (int j = 0; j < kT; ++j) sums[j] = ChainSum<kC>(df, a[j]);
}

// SegmentSums of one row for kT tokens in groups the registers hold.
template <class L, int kT>
HWY_INLINE void SegmentSumsGrouped(DF df, const typename L::T* wr, int64_t len, const float* xq, int64_t stride,
                                   int64_t ahead, float* sums) {
  constexpr int kG = std::min(kT, kMaxTokensPerSweep<L>());
  SegmentSums<L, kG>(df, wr, len, xq, stride, ahead, sums);
  if constexpr (kT > kG) SegmentSumsGrouped<L, kT - kG>(df, wr, len, xq + kG * stride, stride, ahead, sums + kG);
}

// SegmentSums<F32Layout, kT> over columns [s0, s0 + len) of a 4-bit packed row, its weights
// decoded into registers (LoadInt4) rather than through a buffer: the same values in the same
// order, so the same bits. The group size is a multiple of N, s0 of the layout's group; a partial
// last group is decoded as DecodePackedCols does, zeros after it (as LoadTail).
template <int kT>
HWY_INLINE void Int4SegmentSums(DF df, const int32_t* row, const uint16_t* srow, int64_t gs, int64_t s0, int64_t len,
                                const float* xq, int64_t stride, float* sums) {
  using L = F32Layout;
  constexpr int kC = L::kC;
  const int64_t G = GroupWidth<L>(df), full = len / G * G;
  VF a[kT][kC];
  for (int j = 0; j < kT; ++j)
    for (int q = 0; q < kC; ++q) a[j][q] = hn::Zero(df);
  ForInt4Columns<kC>(df, row, srow, gs, s0, s0 + full,
                     [&](int64_t c, const VF* v) { Accumulate<kC, 1, kT>(df, v, xq, stride, c - s0, a); });
  if (full < len) {
    alignas(64) float tail[kC * hn::MaxLanes(DF())] = {};
    for (int64_t c = full; c < len; ++c)
      tail[c - full] = float(packed_code(row, 4, s0 + c)) * bf16_to_f32(srow[(s0 + c) / gs]);
    VF v[kC];
    L::Load(df, tail, v);
    Accumulate<kC, 1, kT>(df, v, xq, stride, full, a);
  }
  for (int j = 0; j < kT; ++j) sums[j] = ChainSum<kC>(df, a[j]);
}

template <int kT>
HWY_INLINE void Int4SegmentSumsGrouped(DF df, const int32_t* row, const uint16_t* srow, int64_t gs, int64_t s0,
                                       int64_t len, const float* xq, int64_t stride, float* sums) {
  constexpr int kG = std::min(kT, kMaxTokensPerSweep<F32Layout>());
  Int4SegmentSums<kG>(df, row, srow, gs, s0, len, xq, stride, sums);
  if constexpr (kT > kG)
    Int4SegmentSumsGrouped<kT - kG>(df, row, srow, gs, s0, len, xq + kG * stride, stride, sums + kG);
}

// kT tokens (x + j · x_stride) against rows [r0, r1): y[j · y_stride + r - r0].
template <class L, int kT>
HWY_INLINE void DotRowsT(const Weight& w, int64_t r0, int64_t r1, const float* x, int64_t x_stride, float* y,
                         int64_t y_stride) {
  using T = typename L::T;
  const DF df;
  const int64_t cols = w.cols, S = L::kSegment, sc = w.scale_cols();
  const auto* base = static_cast<const T*>(w.data);
  const bool scaled = w.scale_inv != nullptr;
  DSV3_DCHECK(scaled || !L::kFp8, "FP8 weight without scale_inv");
  static_assert(kPrepFloats / 4 >= Fp8Layout::kSegment);
  const int64_t chunk = kPrepFloats / kT / S * S;  // columns prepared at once per token
  const int64_t pass = L::kFp8 ? std::min(chunk, Fp8PassColumns(cols, S)) : kColumnPass;
  alignas(64) float xq[kPrepFloats];
  double unscale[kT][kPrepFloats / Fp8Layout::kSegment];
  for (int64_t c0 = 0; c0 < cols; c0 += chunk) {
    const int64_t c1 = std::min(cols, c0 + chunk), pass_cols = std::min(pass, c1 - c0);
    const int64_t ahead_bytes = PrefetchBytes<L, kT>(cols);
    const int64_t ahead =
        ahead_bytes == 0 ? 0 : std::max<int64_t>(1, ahead_bytes / (pass_cols * int64_t(sizeof(T)))) * cols;
    for (int64_t ra = r0; ra < r1;) {
      // Scaled activations carry the scales of the row block (step 3): prepared per block.
      const int64_t rb = ra / kFp8BlockSize, rend = scaled ? std::min(r1, (rb + 1) * kFp8BlockSize) : r1;
      for (int j = 0; j < kT; ++j)
        for (int64_t s0 = c0; s0 < c1; s0 += S)
          unscale[j][(s0 - c0) / S] =
              PrepSegment<L>(df, x + j * x_stride + s0, std::min(S, cols - s0),
                             scaled ? w.scale_inv + rb * sc + s0 / kFp8BlockSize : nullptr, xq + j * chunk + (s0 - c0));
      for (int64_t b0 = ra; b0 < rend; b0 += kRowsPerPass) {
        const int64_t b1 = std::min(rend, b0 + kRowsPerPass);
        for (int64_t p0 = c0; p0 < c1; p0 += pass_cols) {
          const int64_t p1 = std::min(c1, p0 + pass_cols);
          for (int64_t r = b0; r < b1; ++r)
            for (int64_t s0 = p0; s0 < p1; s0 += S) {
              float sums[kT];
              SegmentSumsGrouped<L, kT>(df, base + r * cols + s0, std::min(S, cols - s0), xq + (s0 - c0), chunk,
                                        ahead, sums);
              for (int j = 0; j < kT; ++j) {  // step 6, and step 1's addition in segment order
                const float sum = L::kFp8 ? float(double(sums[j]) * unscale[j][(s0 - c0) / S]) : sums[j];
                float& out = y[j * y_stride + (r - r0)];
                out = s0 == 0 ? sum : out + sum;
              }
            }
        }
      }
      ra = rend;
    }
  }
}

// Packed integer weights (packed_int-inl.h), summed as an F32 weight's segment is (the same order,
// so the same bits as the F32 path over the dequantised weight and as the GEMM): 4-bit rows whose
// group size is a multiple of N decoded straight into the layout's vectors (Int4SegmentSums);
// other rows (8-bit, smaller groups) decoded exactly into f32 on the stack first, where the decode
// stays in L1. The packed rows stream from memory, prefetched ~24 KiB ahead.
template <int kT>
HWY_INLINE void DotPackedRowsT(const Weight& w, int64_t r0, int64_t r1, const float* x, int64_t x_stride, float* y,
                               int64_t y_stride) {
  using L = F32Layout;
  const DF df;
  const int64_t cols = w.cols, S = L::kSegment, row_bytes = w.packed_cols() * 4;
  const int64_t chunk = kPrepFloats / kT / S * S;
  const int64_t ahead_rows = std::max<int64_t>(1, 24576 / std::max<int64_t>(row_bytes, 1));
  alignas(64) float xq[kPrepFloats];
  alignas(64) float wseg[L::kSegment + 64];
  const auto* base = static_cast<const uint8_t*>(w.data);
  static_assert(L::kSegment % (L::kC * hn::MaxLanes(DF())) == 0);
  const bool in_registers = w.bits == 4 && w.group_size % int64_t(hn::Lanes(df)) == 0;
  for (int64_t c0 = 0; c0 < cols; c0 += chunk) {
    const int64_t c1 = std::min(cols, c0 + chunk);
    for (int j = 0; j < kT; ++j)
      for (int64_t s0 = c0; s0 < c1; s0 += S)
        PrepSegment<L>(df, x + j * x_stride + s0, std::min(S, cols - s0), nullptr, xq + j * chunk + (s0 - c0));
    for (int64_t r = r0; r < r1; ++r) {
      if (r + ahead_rows < r1)
        for (int64_t off = 0; off < row_bytes; off += 64) PrefetchL2(base + (r + ahead_rows) * row_bytes + off);
      for (int64_t s0 = c0; s0 < c1; s0 += S) {
        const int64_t len = std::min(S, cols - s0);
        float sums[kT];
        if (in_registers) {
          Int4SegmentSumsGrouped<kT>(df, static_cast<const int32_t*>(w.data) + r * w.packed_cols(),
                                     w.weight_scale + r * w.n_groups(), w.group_size, s0, len, xq + (s0 - c0), chunk,
                                     sums);
        } else {
          DecodePackedCols(w, r, s0, s0 + len, wseg);
          SegmentSumsGrouped<L, kT>(df, wseg, len, xq + (s0 - c0), chunk, 0, sums);
        }
        for (int j = 0; j < kT; ++j) {
          float& out = y[j * y_stride + (r - r0)];
          out = s0 == 0 ? sums[j] : out + sums[j];
        }
      }
    }
  }
}

void MatvecPackedRows(const Weight& w, int64_t r0, int64_t r1, const float* x, int64_t n, int64_t x_stride, float* y,
                      int64_t y_stride) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) DotPackedRowsT<4>(w, r0, r1, x + i * x_stride, x_stride, y + i * y_stride, y_stride);
  const float* xi = x + i * x_stride;
  float* yi = y + i * y_stride;
  switch (n - i) {
    case 3: return DotPackedRowsT<3>(w, r0, r1, xi, x_stride, yi, y_stride);
    case 2: return DotPackedRowsT<2>(w, r0, r1, xi, x_stride, yi, y_stride);
    case 1: return DotPackedRowsT<1>(w, r0, r1, xi, x_stride, yi, y_stride);
    default: return;
  }
}

template <class L>
void MatvecRowsT(const Weight& w, int64_t r0, int64_t r1, const float* x, int64_t n, int64_t x_stride, float* y,
                 int64_t y_stride) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) DotRowsT<L, 4>(w, r0, r1, x + i * x_stride, x_stride, y + i * y_stride, y_stride);
  const float* xi = x + i * x_stride;
  float* yi = y + i * y_stride;
  switch (n - i) {
    case 3: return DotRowsT<L, 3>(w, r0, r1, xi, x_stride, yi, y_stride);
    case 2: return DotRowsT<L, 2>(w, r0, r1, xi, x_stride, yi, y_stride);
    case 1: return DotRowsT<L, 1>(w, r0, r1, xi, x_stride, yi, y_stride);
    default: return;
  }
}

void MatvecRows(const Weight& w, int64_t r0, int64_t r1, const float* x, int64_t n, int64_t x_stride, float* y,
                int64_t y_stride) {
  if (w.packed()) return MatvecPackedRows(w, r0, r1, x, n, x_stride, y, y_stride);
  switch (w.dtype) {
    case DType::F8_E4M3: return MatvecRowsT<Fp8Layout>(w, r0, r1, x, n, x_stride, y, y_stride);
    case DType::BF16: return MatvecRowsT<Bf16Layout>(w, r0, r1, x, n, x_stride, y, y_stride);
    case DType::F16: return MatvecRowsT<F16Layout>(w, r0, r1, x, n, x_stride, y, y_stride);
    case DType::F32: return MatvecRowsT<F32Layout>(w, r0, r1, x, n, x_stride, y, y_stride);
    default: DSV3_CHECK(false, "matvec_rows: unsupported dtype");
  }
}

// ---- matvec_t_rows ----

// Tokens [0, kT) over columns [c0, c1) of one 128-column scale block: out_t[c] = Σ_r q_t[r - r0] ·
// W[r, c], one fma per row in row order from +0, the same for a token whatever kT. Rows go in
// chunks of kRows (their coefficients on the stack); the sums pass between chunks through out.
template <class A, int kT>
HWY_INLINE void MatvecTBlock(const Weight& w, int64_t r0, int64_t r1, const float* q, int64_t q_stride, float* out,
                             int64_t out_stride, int64_t c0, int64_t c1) {
  constexpr int64_t kRows = 64;
  const DF df;
  const int64_t N = int64_t(hn::Lanes(df)), cols = w.cols, b = c0 / kFp8BlockSize;
  const auto* base = static_cast<const typename A::T*>(w.data);
  float coef[kT][kRows];
  for (int64_t ra = r0; ra < r1; ra += kRows) {
    const int64_t rc = std::min(r1, ra + kRows);
    for (int j = 0; j < kT; ++j)
      for (int64_t r = ra; r < rc; ++r) coef[j][r - ra] = q[j * q_stride + (r - r0)] * AccessScale<A>(w, r, b);
    int64_t c = c0;
    for (; c + 2 * N <= c1; c += 2 * N) {
      VF a[kT][2];
      for (int j = 0; j < kT; ++j)
        for (int v = 0; v < 2; ++v)
          a[j][v] = ra == r0 ? hn::Zero(df) : hn::LoadU(df, out + j * out_stride + c + v * N);
      for (int64_t r = ra; r < rc; ++r) {
        const auto* wr = base + r * cols + c;
        const VF w0 = A::Load(df, wr), w1 = A::Load(df, wr + N);
        for (int j = 0; j < kT; ++j) {
          const VF vc = hn::Set(df, coef[j][r - ra]);
          a[j][0] = hn::MulAdd(w0, vc, a[j][0]);
          a[j][1] = hn::MulAdd(w1, vc, a[j][1]);
        }
      }
      for (int j = 0; j < kT; ++j)
        for (int v = 0; v < 2; ++v) hn::StoreU(a[j][v], df, out + j * out_stride + c + v * N);
    }
    for (; c + N <= c1; c += N) {
      VF a[kT];
      for (int j = 0; j < kT; ++j) a[j] = ra == r0 ? hn::Zero(df) : hn::LoadU(df, out + j * out_stride + c);
      for (int64_t r = ra; r < rc; ++r) {
        const VF w0 = A::Load(df, base + r * cols + c);
        for (int j = 0; j < kT; ++j) a[j] = hn::MulAdd(w0, hn::Set(df, coef[j][r - ra]), a[j]);
      }
      for (int j = 0; j < kT; ++j) hn::StoreU(a[j], df, out + j * out_stride + c);
    }
    for (; c < c1; ++c)
      for (int j = 0; j < kT; ++j) {
        float s = ra == r0 ? 0.0f : out[j * out_stride + c];
        for (int64_t r = ra; r < rc; ++r) s = MulAdd1(A::Scalar(base + r * cols + c), coef[j][r - ra] / A::kPre, s);
        out[j * out_stride + c] = s;
      }
  }
}

template <class A>
void MatvecTRowsT(const Weight& w, int64_t r0, int64_t r1, const float* q, int64_t n, int64_t q_stride, float* out,
                  int64_t out_stride) {
  if (r0 >= r1) {
    for (int64_t i = 0; i < n; ++i) std::fill(out + i * out_stride, out + i * out_stride + w.cols, 0.0f);
    return;
  }
  for (int64_t c0 = 0; c0 < w.cols; c0 += kFp8BlockSize) {
    const int64_t c1 = std::min(w.cols, c0 + kFp8BlockSize);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
      MatvecTBlock<A, 4>(w, r0, r1, q + i * q_stride, q_stride, out + i * out_stride, out_stride, c0, c1);
    const float* qi = q + i * q_stride;
    float* oi = out + i * out_stride;
    switch (n - i) {
      case 3: MatvecTBlock<A, 3>(w, r0, r1, qi, q_stride, oi, out_stride, c0, c1); break;
      case 2: MatvecTBlock<A, 2>(w, r0, r1, qi, q_stride, oi, out_stride, c0, c1); break;
      case 1: MatvecTBlock<A, 1>(w, r0, r1, qi, q_stride, oi, out_stride, c0, c1); break;
      default: break;
    }
  }
}

void MatvecTRows(const Weight& w, int64_t r0, int64_t r1, const float* q, int64_t n, int64_t q_stride, float* out,
                 int64_t out_stride) {
  DSV3_CHECK(!w.packed(), "matvec_t_rows: packed weights are refused by the loader for kv_b_proj");
  switch (w.dtype) {
    case DType::F8_E4M3: return MatvecTRowsT<Fp8Access>(w, r0, r1, q, n, q_stride, out, out_stride);
    case DType::BF16: return MatvecTRowsT<Bf16Access>(w, r0, r1, q, n, q_stride, out, out_stride);
    case DType::F16: return MatvecTRowsT<F16Access>(w, r0, r1, q, n, q_stride, out, out_stride);
    case DType::F32: return MatvecTRowsT<F32Access>(w, r0, r1, q, n, q_stride, out, out_stride);
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
      const float s = AccessScale<A>(w, r, b);
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
  if (w.packed()) {
    for (int64_t r = r0; r < r1; ++r) DecodePackedCols(w, r, 0, w.cols, out + (r - r0) * out_stride);
    return;
  }
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
void matvec_t_rows(const Weight& w, int64_t r0, int64_t r1, const float* q, int64_t n, int64_t q_stride, float* out,
                   int64_t out_stride) {
  HWY_DYNAMIC_DISPATCH(MatvecTRows)(w, r0, r1, q, n, q_stride, out, out_stride);
}
void dequant_rows(const Weight& w, int64_t r0, int64_t r1, float* out, int64_t out_stride) {
  HWY_DYNAMIC_DISPATCH(DequantRows)(w, r0, r1, out, out_stride);
}
float sum_f32(const float* p, int64_t n) { return HWY_DYNAMIC_DISPATCH(SumF32)(p, n); }
const char* target_name() { return hwy::TargetName(HWY_DYNAMIC_DISPATCH(CurrentTarget)()); }

}  // namespace dsv3::cpu
#endif
