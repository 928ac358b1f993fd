// The many-token (prefill) matrix product on dequantised f32 weight tiles, our own kernel in
// place of OpenBLAS sgemm: y[t, r] = Σ_k W[r, k] · x[t, k].
//
// Layout: the activations are packed once per call into token panels (`gemm_pack_panels`: for each
// panel of up to two SIMD vectors of tokens, [cols][panel width] floats, tokens past n zero), so
// that one aligned load gives one k for a vector of tokens; the weight tile stays in its natural
// row-major layout and each weight is broadcast. The register block is kGemmRowBlock rows x one
// panel (12 x 32 on AVX-512: 24 accumulators), summed over all of k without leaving registers,
// then written to y. No transposition of the weights: the tile is what dequant_rows writes.
//
// Measured here (Zen 4, one thread, bench-m shapes, weights dequantised from BF16 per tile):
// 93-109 GFLOP/s against 79-97 for dequantisation + OpenBLAS sgemm on the same tiles (OpenBLAS
// packs both operands on every call); the FMA peak of one core is ~117.
#pragma once

#include <cstdint>

namespace dsv3::cpu {

// Rows of the register block. Tiles passed to gemm_tile hold a whole number of such blocks:
// rows past the valid ones are read (any values, NaN included) but reach no output.
inline constexpr int64_t kGemmRowBlock = 12;

// Floats that gemm_pack_panels writes for n tokens of `cols` values (the dispatched target's layout).
int64_t gemm_packed_floats(int64_t n, int64_t cols);

// Panels that n tokens make; gemm_pack_panels packs panels [p0, p1) of x [n, cols] (row stride
// cols) into xp (gemm_packed_floats(n, cols) floats), so that callers can split the packing.
int64_t gemm_panels(int64_t n);
void gemm_pack_panels(const float* x, int64_t n, int64_t cols, int64_t p0, int64_t p1, float* xp);

// y[t * y_stride + r] = Σ_k tile[r * ld + k] · x[t, k] for r < rows, t < n, with xp the packed x.
// The tile has ceil(rows / kGemmRowBlock) · kGemmRowBlock rows of ld >= cols floats.
void gemm_tile(const float* tile, int64_t ld, int64_t rows, const float* xp, int64_t n, int64_t cols, float* y,
               int64_t y_stride);

}  // namespace dsv3::cpu
