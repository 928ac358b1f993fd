// Highway kernels for gemm.h, compiled once per target by foreach_target.h.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "backends/cpu/gemm.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

#include "backends/cpu/dot_order-inl.h"
#include "backends/cpu/packed_int-inl.h"

#include <algorithm>

#include "backends/cpu/gemm.h"
#include "base/error.h"

HWY_BEFORE_NAMESPACE();
namespace dsv3::cpu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Rows per register block: 12 rows x 2 vectors = 24 accumulators where there are 32 vector
// registers (AVX-512), 6 x 2 where there are 16 (AVX2). Both divide kGemmRowBlock.
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
constexpr int kMR = 12;
#else
constexpr int kMR = 6;
#endif
static_assert(kGemmRowBlock % kMR == 0);

// Tokens per panel: two vectors, the last panel one or two.
HWY_INLINE int64_t PanelWidth() { return 2 * int64_t(hn::Lanes(DF())); }

// The weight's layout, as a type for the templates below.
template <class F>
HWY_INLINE auto WithLayout(const Weight& w, F&& f) {
  if (w.packed()) return f(F32Layout());  // decoded to f32 rows first (RowsT)
  switch (w.dtype) {
    case DType::F8_E4M3: return f(Fp8Layout());
    case DType::BF16: return f(Bf16Layout());
    case DType::F16: return f(F16Layout());
    case DType::F32: return f(F32Layout());
    default: DSV3_CHECK(false, "gemm: unsupported dtype");
  }
  return f(F32Layout());
}

// Columns padded to whole groups: segment g starts at g · kSegment in the packed and tile layouts.
template <class L>
HWY_INLINE int64_t PaddedCols(int64_t cols) {
  const int64_t G = GroupWidth<L>(DF());
  return (cols + G - 1) / G * G;
}

int64_t GemmPanels(int64_t n) { return (n + PanelWidth() - 1) / PanelWidth(); }

int64_t GemmPackedFloats(const Weight& w, int64_t n) {
  const int64_t N = int64_t(hn::Lanes(DF()));
  return WithLayout(w, [&](auto l) { return (n + N - 1) / N * N * PaddedCols<decltype(l)>(w.cols); });
}

template <class L>
HWY_INLINE int64_t Segments(int64_t cols) {
  return (cols + L::kSegment - 1) / L::kSegment;
}

int64_t GemmUnscaleCount(const Weight& w, int64_t n) {
  return WithLayout(w, [&](auto l) { return n * Segments<decltype(l)>(w.cols); });
}

// v[i] lane j -> v[j] lane i, for the N vectors v[0 .. N).
HWY_INLINE void Transpose(DF df, VF* v) {
#if HWY_TARGET == HWY_SCALAR
  (void)df, (void)v;
#elif HWY_TARGET == HWY_AVX2 || (HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3)
  // 32-bit then 64-bit interleaves within 128-bit blocks (4x4 transposes per block), then the
  // blocks move into place.
  const hn::Repartition<double, DF> dd;
  constexpr int kN = int(hn::MaxLanes(DF()));
  VF u[kN];
  for (int g = 0; g < kN; g += 4) {
    const VF t0 = hn::InterleaveLower(df, v[g], v[g + 1]), t1 = hn::InterleaveUpper(df, v[g], v[g + 1]);
    const VF t2 = hn::InterleaveLower(df, v[g + 2], v[g + 3]), t3 = hn::InterleaveUpper(df, v[g + 2], v[g + 3]);
    u[g] = hn::BitCast(df, hn::InterleaveLower(dd, hn::BitCast(dd, t0), hn::BitCast(dd, t2)));
    u[g + 1] = hn::BitCast(df, hn::InterleaveUpper(dd, hn::BitCast(dd, t0), hn::BitCast(dd, t2)));
    u[g + 2] = hn::BitCast(df, hn::InterleaveLower(dd, hn::BitCast(dd, t1), hn::BitCast(dd, t3)));
    u[g + 3] = hn::BitCast(df, hn::InterleaveUpper(dd, hn::BitCast(dd, t1), hn::BitCast(dd, t3)));
  }
  // u[g + c] block b = rows g .. g+3 of column 4b + c.
#if HWY_TARGET == HWY_AVX2
  for (int c = 0; c < 4; ++c) {
    v[c] = hn::ConcatLowerLower(df, u[4 + c], u[c]);
    v[4 + c] = hn::ConcatUpperUpper(df, u[4 + c], u[c]);
  }
#else
  for (int c = 0; c < 4; ++c) {
    const __m512 p = _mm512_shuffle_f32x4(u[c].raw, u[4 + c].raw, _MM_SHUFFLE(2, 0, 2, 0));
    const __m512 q = _mm512_shuffle_f32x4(u[c].raw, u[4 + c].raw, _MM_SHUFFLE(3, 1, 3, 1));
    const __m512 r = _mm512_shuffle_f32x4(u[8 + c].raw, u[12 + c].raw, _MM_SHUFFLE(2, 0, 2, 0));
    const __m512 s = _mm512_shuffle_f32x4(u[8 + c].raw, u[12 + c].raw, _MM_SHUFFLE(3, 1, 3, 1));
    v[c].raw = _mm512_shuffle_f32x4(p, r, _MM_SHUFFLE(2, 0, 2, 0));
    v[8 + c].raw = _mm512_shuffle_f32x4(p, r, _MM_SHUFFLE(3, 1, 3, 1));
    v[4 + c].raw = _mm512_shuffle_f32x4(q, s, _MM_SHUFFLE(2, 0, 2, 0));
    v[12 + c].raw = _mm512_shuffle_f32x4(q, s, _MM_SHUFFLE(3, 1, 3, 1));
  }
#endif
#else
  constexpr int64_t kN = int64_t(hn::MaxLanes(DF()));
  const int64_t N = int64_t(hn::Lanes(df));
  HWY_ALIGN float buf[kN * kN], col[kN];
  for (int64_t i = 0; i < N; ++i) hn::Store(v[i], df, buf + i * N);
  for (int64_t j = 0; j < N; ++j) {
    for (int64_t i = 0; i < N; ++i) col[i] = buf[i * N + j];
    v[j] = hn::Load(df, col);
  }
#endif
}

// Partial (q, l) sits in slot q · N + bitrev(l) of a segment in the packed activations and the
// tiles: the order's tree folds lanes l and l + N/2 first, so the binary-counter merge visits the
// lanes in bit-reversed order (N = 8: 0 4 2 6 1 5 3 7), and in the slots one after another (the
// L1 prefetcher lost the panel's 4 KiB partials visited out of place: ~25% slower).
HWY_INLINE int64_t BitReverse(int64_t idx, int64_t n) {
  int64_t r = 0;
  for (int64_t b = 1; b < n; b <<= 1) r = (r << 1) | ((idx & b) ? 1 : 0);
  return r;
}

// Panel p: tokens [p·P, p·P + nt) at xp + p·P·padded as [k'][width], width = P, or for the last
// panel nt rounded up to whole vectors; lanes past nt are zero. k' = the segment's start + slot ·
// steps · kDepth + k · kDepth + d for partial (q, l) at group k, depth d.
template <class L>
HWY_INLINE void PackT(const Weight& w, const float* x, int64_t n, int64_t x_stride, int64_t p0, int64_t p1, float* xp,
                      double* unscale) {
  const DF df;
  constexpr int64_t kMaxN = int64_t(hn::MaxLanes(DF()));
  const int64_t N = int64_t(hn::Lanes(df)), G = GroupWidth<L>(df), P = PanelWidth(), cols = w.cols;
  const int64_t padded = PaddedCols<L>(cols), S = L::kSegment, n_seg = Segments<L>(cols);
  HWY_ALIGN float xs[kMaxN][L::kSegment];  // a vector of tokens' segments in load order
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t t0 = p * P, nt = std::min(P, n - t0), width = (nt + N - 1) / N * N;
    float* dst = xp + t0 * padded;
    for (int64_t s0 = 0; s0 < cols; s0 += S) {
      const int64_t len = std::min(S, cols - s0), steps = (len + G - 1) / G;
      for (int64_t v0 = 0; v0 < width; v0 += N) {
        for (int64_t i = 0; i < N; ++i) {
          const int64_t t = t0 + v0 + i;
          if (v0 + i < nt)
            unscale[t * n_seg + s0 / S] = PrepSegment<L>(df, x + t * x_stride + s0, len, nullptr, xs[i]);
          else
            std::fill(xs[i], xs[i] + steps * G, 0.0f);
        }
        for (int64_t k = 0; k < steps; ++k)
          for (int m = 0; m < L::kC * L::kDepth; ++m) {
            VF t[kMaxN];
            for (int64_t i = 0; i < N; ++i) t[i] = hn::Load(df, xs[i] + k * G + m * N);
            Transpose(df, t);
            const int64_t q = m % L::kC, d = m / L::kC;
            for (int64_t l = 0; l < N; ++l) {
              const int64_t slot = q * N + BitReverse(l, N);
              hn::StoreU(t[l], df, dst + (s0 + (slot * steps + k) * L::kDepth + d) * width + v0);
            }
          }
      }
    }
  }
}

void GemmPack(const Weight& w, const float* x, int64_t n, int64_t x_stride, int64_t p0, int64_t p1, float* xp,
              double* unscale) {
  WithLayout(w, [&](auto l) { PackT<decltype(l)>(w, x, n, x_stride, p0, p1, xp, unscale); });
}

// Group k of a segment starting at ws (len weights) into the layout's chain vectors.
template <class L>
HWY_INLINE void LoadGroup(DF df, const typename L::T* ws, int64_t k, int64_t len, VF* v) {
  const int64_t G = GroupWidth<L>(df);
  if ((k + 1) * G <= len)
    L::Load(df, ws + k * G, v);
  else
    LoadTail<L>(df, ws + k * G, len - k * G, v);
}

// [A0 B0 A1 B1 ...] of two vectors, into out[0 .. 2N).
HWY_INLINE void StoreZip(DF df, VF a, VF b, float* out) {
#if HWY_TARGET == HWY_AVX2
  const VF lo = hn::InterleaveLower(df, a, b), hi = hn::InterleaveUpper(df, a, b);  // per 128-bit block
  hn::StoreU(hn::ConcatLowerLower(df, hi, lo), df, out);
  hn::StoreU(hn::ConcatUpperUpper(df, hi, lo), df, out + 8);
#else
  constexpr int64_t kMaxN = int64_t(hn::MaxLanes(DF()));
  const int64_t N = int64_t(hn::Lanes(df));
  HWY_ALIGN float ab[2 * kMaxN];
  hn::Store(a, df, ab);
  hn::Store(b, df, ab + N);
  for (int64_t i = 0; i < N; ++i) out[2 * i] = ab[i], out[2 * i + 1] = ab[N + i];
#endif
}

// Rows [r0, r1) of w into tile (row stride ld), each segment partial by partial: the weight of
// partial (q, l) at group k, depth d of segment g (as the layout loads it) at g · kSegment +
// (slot · steps + k) · kDepth + d, zeros past the row's end. Groups go N at a time through N x N
// transposes.
template <class L>
HWY_INLINE void DequantTile(const Weight& w, int64_t r0, int64_t r1, float* tile, int64_t ld) {
  using T = typename L::T;
  constexpr int kM = L::kC * L::kDepth;  // vectors per group
  const DF df;
  constexpr int64_t kMaxN = int64_t(hn::MaxLanes(DF()));
  const int64_t N = int64_t(hn::Lanes(df)), G = GroupWidth<L>(df), cols = w.cols, S = L::kSegment;
  const auto* base = static_cast<const T*>(w.data);
  HWY_ALIGN float buf[kM * kMaxN * kMaxN];  // [vector m][group of the block][lane]
  for (int64_t r = r0; r < r1; ++r) {
    const T* wr = base + r * cols;
    float* out = tile + (r - r0) * ld;
    // The rows two ahead, from memory: the transposes leave too few loads in flight for the
    // hardware prefetcher alone (FP8 prefill GEMMs ~10% slower without it, here).
    for (int64_t off = 0; off < cols * int64_t(sizeof(T)); off += 64)
      PrefetchL2(reinterpret_cast<const uint8_t*>(wr + 2 * cols) + off);
    for (int64_t s0 = 0; s0 < cols; s0 += S) {
      const int64_t len = std::min(S, cols - s0), steps = (len + G - 1) / G;
      float* seg = out + s0;
      int64_t k0 = 0;
      for (; k0 + N <= steps; k0 += N) {
        for (int64_t i = 0; i < N; ++i) {
          VF v[kM];
          LoadGroup<L>(df, wr + s0, k0 + i, len, v);
          for (int m = 0; m < kM; ++m) hn::Store(v[m], df, buf + (m * N + i) * N);
        }
        for (int q = 0; q < L::kC; ++q) {
          VF t[L::kDepth][kMaxN];
          for (int d = 0; d < L::kDepth; ++d) {
            for (int64_t i = 0; i < N; ++i) t[d][i] = hn::Load(df, buf + ((d * L::kC + q) * N + i) * N);
            Transpose(df, t[d]);
          }
          for (int64_t l = 0; l < N; ++l) {
            float* o = seg + ((q * N + BitReverse(l, N)) * steps + k0) * L::kDepth;
            if constexpr (L::kDepth == 1)
              hn::StoreU(t[0][l], df, o);
            else
              StoreZip(df, t[0][l], t[1][l], o);
          }
        }
      }
      for (int64_t k = k0; k < steps; ++k) {
        VF v[kM];
        LoadGroup<L>(df, wr + s0, k, len, v);
        for (int m = 0; m < kM; ++m) hn::Store(v[m], df, buf + m * N);
        for (int m = 0; m < kM; ++m)
          for (int64_t l = 0; l < N; ++l) {
            const int64_t slot = (m % L::kC) * N + BitReverse(l, N);
            seg[(slot * steps + k) * L::kDepth + m / L::kC] = buf[m * N + l];
          }
      }
    }
  }
}

// kR rows of the tile (row stride ld) against one panel of kV vectors of tokens (xp, row width
// `width`), all segments; writes the first nt tokens into y[t * y_stride + i]. Each partial runs
// over its steps with the weights broadcast; the partials, in slot order, merge as a binary
// counter, which is the order's tree (dot_order-inl.h step 5).
template <int kR, int kV, class L>
HWY_NOINLINE void Micro(const float* w, int64_t ld, const float* xp, int64_t width, int64_t cols, int64_t nt,
                        const double* unscale, int64_t n_seg, float* y, int64_t y_stride) {
  const DF df;
  constexpr int64_t kMaxN = int64_t(hn::MaxLanes(DF())), kLevels = 8;  // log2(kC · N) + 1 <= 8
  const int64_t N = int64_t(hn::Lanes(df)), G = GroupWidth<L>(df), S = L::kSegment, partials = L::kC * N;
  HWY_ALIGN float stack[kLevels][kR][kV * kMaxN];
  for (int64_t s0 = 0; s0 < cols; s0 += S) {
    const int64_t len = std::min(S, cols - s0), steps = (len + G - 1) / G * L::kDepth;  // per partial
    int top = 0;
    for (int64_t p = 0; p < partials; ++p) {
      const float* wb = w + s0 + p * steps;
      const float* xb = xp + (s0 + p * steps) * width;
      VF a[kR][kV];
      for (int i = 0; i < kR; ++i)
        for (int v = 0; v < kV; ++v) a[i][v] = hn::Zero(df);
      for (int64_t k = 0; k < steps; ++k) {
        VF xv[kV];
        for (int v = 0; v < kV; ++v) xv[v] = hn::LoadU(df, xb + k * width + v * N);
#pragma GCC unroll 12
        for (int i = 0; i < kR; ++i) {
          const VF wv = hn::Set(df, wb[i * ld + k]);
          for (int v = 0; v < kV; ++v) a[i][v] = hn::MulAdd(wv, xv[v], a[i][v]);
        }
      }
      for (int64_t m = p + 1; (m & 1) == 0; m >>= 1) {
        --top;
        for (int i = 0; i < kR; ++i)
          for (int v = 0; v < kV; ++v) a[i][v] = hn::Add(hn::Load(df, &stack[top][i][v * N]), a[i][v]);
      }
      for (int i = 0; i < kR; ++i)
        for (int v = 0; v < kV; ++v) hn::Store(a[i][v], df, &stack[top][i][v * N]);
      ++top;
    }
    for (int64_t t = 0; t < nt; ++t)
      for (int i = 0; i < kR; ++i) {
        float sum = stack[0][i][t];
        if constexpr (L::kFp8) sum = float(double(sum) * unscale[t * n_seg + s0 / S]);
        float& out = y[t * y_stride + i];
        out = s0 == 0 ? sum : out + sum;
      }
  }
}

template <int kV, class L>
HWY_INLINE void RowBlocks(const float* tile, int64_t ld, int64_t rows, const float* xp, int64_t width, int64_t cols,
                          int64_t nt, const double* unscale, int64_t n_seg, float* y, int64_t y_stride) {
  // Rows past the last whole block go through one more full block that ends at the last row: its
  // first rows are computed twice, to the same bits, at the full block's speed (a 2-row block for
  // FP8 tiles' 128 = 21 x 6 + 2 rows took ~7% of the kernel's time for 1.5% of its rows).
  if (rows < kMR) {
    int64_t i = 0;
    for (; i + 4 <= rows; i += 4)
      Micro<4, kV, L>(tile + i * ld, ld, xp, width, cols, nt, unscale, n_seg, y + i, y_stride);
    for (; i + 2 <= rows; i += 2)
      Micro<2, kV, L>(tile + i * ld, ld, xp, width, cols, nt, unscale, n_seg, y + i, y_stride);
    for (; i < rows; ++i) Micro<1, kV, L>(tile + i * ld, ld, xp, width, cols, nt, unscale, n_seg, y + i, y_stride);
    return;
  }
  for (int64_t i = 0; i < rows; i += kMR) {
    const int64_t b = std::min(i, rows - kMR);
    Micro<kMR, kV, L>(tile + b * ld, ld, xp, width, cols, nt, unscale, n_seg, y + b, y_stride);
  }
}

template <class L>
HWY_INLINE int64_t TileStride(int64_t cols) {
  // A stride of a multiple of 4 KiB maps every row to the same cache sets.
  return PaddedCols<L>(cols) + 16;
}

int64_t GemmTileRows(const Weight& w) {
  return WithLayout(w, [&](auto l) -> int64_t {
    const int64_t row_bytes = TileStride<decltype(l)>(w.cols) * 4;
    // About 2 MiB of f32: 1-2 MiB tiles prefilled bench-m's 512 tokens fastest here, 256 KiB ones
    // ~10% slower. FP8 tiles stay within a 128-row block of scales.
    if (w.scale_inv != nullptr) {
      int64_t rows = kFp8BlockSize;
      while (rows > 16 && rows * row_bytes > (int64_t(5) << 19)) rows /= 2;
      return rows;
    }
    const int64_t rows = (int64_t(2) << 20) / row_bytes / kGemmRowBlock * kGemmRowBlock;
    return std::clamp<int64_t>(rows, kGemmRowBlock, 240);
  });
}

int64_t GemmScratchFloats(const Weight& w) {
  return WithLayout(w, [&](auto l) -> int64_t {
    using L = decltype(l);
    return GemmTileRows(w) * TileStride<L>(w.cols) + (w.scale_inv ? PanelWidth() * PaddedCols<L>(w.cols) : 0) +
           (w.packed() ? PaddedCols<L>(w.cols) : 0);
  });
}

// A packed weight's rows decoded one at a time into `row` (f32, exact), then laid into the tile as
// an F32 row is.
HWY_INLINE void DequantPackedTile(const Weight& w, int64_t r0, int64_t r1, float* tile, int64_t ld, float* row) {
  Weight f = w;
  f.dtype = DType::F32;
  f.bits = 0;
  f.weight_scale = nullptr;
  f.rows = 1;
  f.data = row;
  const auto* packed = static_cast<const uint8_t*>(w.data);
  const int64_t row_bytes = w.packed_cols() * 4;
  for (int64_t r = r0; r < r1; ++r) {
    for (int64_t off = 0; off < row_bytes; off += 64) PrefetchL2(packed + (r + 2) * row_bytes + off);
    DecodePackedCols(w, r, 0, w.cols, row);
    DequantTile<F32Layout>(f, 0, 1, tile + (r - r0) * ld, ld);
  }
}

// The panel (width tokens) times the scales of row block rb, per group (step 3 of the order).
template <class L>
HWY_INLINE void ScalePanel(const Weight& w, int64_t rb, const float* xp, int64_t width, float* out) {
  const DF df;
  const int64_t N = int64_t(hn::Lanes(df)), G = GroupWidth<L>(df), cols = w.cols, S = L::kSegment;
  const float* srow = w.scale_inv + rb * w.scale_cols();
  for (int64_t s0 = 0; s0 < cols; s0 += S) {
    const int64_t len = std::min(S, cols - s0), steps = (len + G - 1) / G;
    for (int64_t slot = 0; slot < L::kC * N; ++slot)
      for (int64_t k = 0; k < steps * L::kDepth; ++k) {
        const VF vs = hn::Set(df, srow[(s0 + k / L::kDepth * G) / kFp8BlockSize]);
        const int64_t off = (s0 + slot * steps * L::kDepth + k) * width;
        for (int64_t v = 0; v < width; v += N) hn::StoreU(hn::Mul(hn::LoadU(df, xp + off + v), vs), df, out + off + v);
      }
  }
}

template <class L>
HWY_INLINE void RowsT(const Weight& w, int64_t r0, int64_t r1, const float* xp, const double* unscale, int64_t n,
                      float* y, int64_t y_stride, float* scratch) {
  const int64_t N = int64_t(hn::Lanes(DF())), P = PanelWidth(), cols = w.cols, padded = PaddedCols<L>(cols);
  const int64_t ld = TileStride<L>(cols), tile_rows = GemmTileRows(w), n_seg = (cols + L::kSegment - 1) / L::kSegment;
  const bool scaled = w.scale_inv != nullptr;
  float* tile = scratch;
  float* scaled_panel = scratch + tile_rows * ld;
  for (int64_t r = r0; r < r1;) {
    int64_t re = std::min(r1, r + tile_rows);
    if (scaled) re = std::min(re, (r / kFp8BlockSize + 1) * kFp8BlockSize);
    if (w.packed())
      DequantPackedTile(w, r, re, tile, ld, scratch + tile_rows * ld);
    else
      DequantTile<L>(w, r, re, tile, ld);
    // Panel outer: one panel (P x cols floats) stays in L2 while the tile's row blocks pass it.
    for (int64_t t0 = 0; t0 < n; t0 += P) {
      const int64_t nt = std::min(P, n - t0), width = (nt + N - 1) / N * N;
      const float* panel = xp + t0 * padded;
      if (scaled) {
        ScalePanel<L>(w, r / kFp8BlockSize, panel, width, scaled_panel);
        panel = scaled_panel;
      }
      float* yt = y + t0 * y_stride + (r - r0);
      if (nt > N)
        RowBlocks<2, L>(tile, ld, re - r, panel, width, cols, nt, unscale + t0 * n_seg, n_seg, yt, y_stride);
      else
        RowBlocks<1, L>(tile, ld, re - r, panel, width, cols, nt, unscale + t0 * n_seg, n_seg, yt, y_stride);
    }
    r = re;
  }
}

void GemmRows(const Weight& w, int64_t r0, int64_t r1, const float* xp, const double* unscale, int64_t n, float* y,
              int64_t y_stride, float* scratch) {
  WithLayout(w, [&](auto l) { RowsT<decltype(l)>(w, r0, r1, xp, unscale, n, y, y_stride, scratch); });
}

}  // namespace HWY_NAMESPACE
}  // namespace dsv3::cpu
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace dsv3::cpu {

HWY_EXPORT(GemmPanels);
HWY_EXPORT(GemmPackedFloats);
HWY_EXPORT(GemmUnscaleCount);
HWY_EXPORT(GemmPack);
HWY_EXPORT(GemmTileRows);
HWY_EXPORT(GemmScratchFloats);
HWY_EXPORT(GemmRows);

int64_t gemm_panels(int64_t n) { return HWY_DYNAMIC_DISPATCH(GemmPanels)(n); }
int64_t gemm_packed_floats(const Weight& w, int64_t n) { return HWY_DYNAMIC_DISPATCH(GemmPackedFloats)(w, n); }
int64_t gemm_unscale_count(const Weight& w, int64_t n) { return HWY_DYNAMIC_DISPATCH(GemmUnscaleCount)(w, n); }
void gemm_pack(const Weight& w, const float* x, int64_t n, int64_t x_stride, int64_t p0, int64_t p1, float* xp,
               double* unscale) {
  HWY_DYNAMIC_DISPATCH(GemmPack)(w, x, n, x_stride, p0, p1, xp, unscale);
}
int64_t gemm_tile_rows(const Weight& w) { return HWY_DYNAMIC_DISPATCH(GemmTileRows)(w); }
int64_t gemm_scratch_floats(const Weight& w) { return HWY_DYNAMIC_DISPATCH(GemmScratchFloats)(w); }
void gemm_rows(const Weight& w, int64_t r0, int64_t r1, const float* xp, const double* unscale, int64_t n, float* y,
               int64_t y_stride, float* scratch) {
  HWY_DYNAMIC_DISPATCH(GemmRows)(w, r0, r1, xp, unscale, n, y, y_stride, scratch);
}

}  // namespace dsv3::cpu
#endif
