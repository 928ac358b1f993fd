// Highway kernels for gemm.h, compiled once per target by foreach_target.h.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "backends/cpu/gemm.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

#include <algorithm>

#include "backends/cpu/gemm.h"

HWY_BEFORE_NAMESPACE();
namespace dsv3::cpu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

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

int64_t GemmPackedFloats(int64_t n, int64_t cols) {
  const int64_t N = int64_t(hn::Lanes(DF()));
  return (n + N - 1) / N * N * cols;
}

int64_t GemmPanels(int64_t n) { return (n + PanelWidth() - 1) / PanelWidth(); }

// Panel p: tokens [p·P, p·P + nt) at xp + p·P·cols as [cols][width], width = P, or for the last
// panel nt rounded up to whole vectors; lanes past nt are zero.
void GemmPackPanels(const float* x, int64_t n, int64_t cols, int64_t p0, int64_t p1, float* xp) {
  const int64_t N = int64_t(hn::Lanes(DF())), P = PanelWidth();
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t t0 = p * P, nt = std::min(P, n - t0), width = (nt + N - 1) / N * N;
    float* dst = xp + t0 * cols;
    for (int64_t k = 0; k < cols; ++k) {
      for (int64_t j = 0; j < nt; ++j) dst[k * width + j] = x[(t0 + j) * cols + k];
      for (int64_t j = nt; j < width; ++j) dst[k * width + j] = 0.0f;
    }
  }
}

// kMR rows of the tile against one panel of kV vectors of tokens, over all cols; writes the
// first `rows` rows and `nt` tokens into y.
template <int kV>
HWY_NOINLINE void Micro(const float* w, int64_t ld, const float* xp, int64_t cols, int64_t rows, int64_t nt, float* y,
                        int64_t y_stride) {
  const DF df;
  const int64_t N = int64_t(hn::Lanes(df));
  VF a[kMR][kV];
  for (int i = 0; i < kMR; ++i)
    for (int v = 0; v < kV; ++v) a[i][v] = hn::Zero(df);
  for (int64_t k = 0; k < cols; ++k) {
    VF xv[kV];
    for (int v = 0; v < kV; ++v) xv[v] = hn::LoadU(df, xp + (k * kV + v) * N);
#pragma GCC unroll 12
    for (int i = 0; i < kMR; ++i) {
      const VF wv = hn::Set(df, w[i * ld + k]);
      for (int v = 0; v < kV; ++v) a[i][v] = hn::MulAdd(wv, xv[v], a[i][v]);
    }
  }
  HWY_ALIGN float ct[kMR * kV * hn::MaxLanes(df)];
  for (int i = 0; i < kMR; ++i)
    for (int v = 0; v < kV; ++v) hn::Store(a[i][v], df, ct + (i * kV + v) * N);
  for (int64_t t = 0; t < nt; ++t)
    for (int64_t i = 0; i < rows; ++i) y[t * y_stride + i] = ct[i * kV * N + t];
}

void GemmTile(const float* tile, int64_t ld, int64_t rows, const float* xp, int64_t n, int64_t cols, float* y,
              int64_t y_stride) {
  const int64_t N = int64_t(hn::Lanes(DF())), P = PanelWidth();
  // Panel outer: one panel (P x cols floats) stays in L2 while the tile's row blocks pass it.
  for (int64_t t0 = 0; t0 < n; t0 += P) {
    const int64_t nt = std::min(P, n - t0);
    const float* xpp = xp + t0 * cols;
    float* yp = y + t0 * y_stride;
    for (int64_t r = 0; r < rows; r += kMR) {
      const int64_t mr = std::min<int64_t>(kMR, rows - r);
      if (nt > N)
        Micro<2>(tile + r * ld, ld, xpp, cols, mr, nt, yp + r, y_stride);
      else
        Micro<1>(tile + r * ld, ld, xpp, cols, mr, nt, yp + r, y_stride);
    }
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace dsv3::cpu
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace dsv3::cpu {

HWY_EXPORT(GemmPackedFloats);
HWY_EXPORT(GemmPanels);
HWY_EXPORT(GemmPackPanels);
HWY_EXPORT(GemmTile);

int64_t gemm_packed_floats(int64_t n, int64_t cols) { return HWY_DYNAMIC_DISPATCH(GemmPackedFloats)(n, cols); }
int64_t gemm_panels(int64_t n) { return HWY_DYNAMIC_DISPATCH(GemmPanels)(n); }
void gemm_pack_panels(const float* x, int64_t n, int64_t cols, int64_t p0, int64_t p1, float* xp) {
  HWY_DYNAMIC_DISPATCH(GemmPackPanels)(x, n, cols, p0, p1, xp);
}
void gemm_tile(const float* tile, int64_t ld, int64_t rows, const float* xp, int64_t n, int64_t cols, float* y,
               int64_t y_stride) {
  HWY_DYNAMIC_DISPATCH(GemmTile)(tile, ld, rows, xp, n, cols, y, y_stride);
}

}  // namespace dsv3::cpu
#endif
