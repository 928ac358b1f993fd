// The many-token (prefill) matrix product over weights as stored, our own kernel:
// y[t, r] = Σ_c W[r, c] · x[t, c], summed in dot_order-inl.h's order, so that every output has
// the bits matvec_rows (kernels.h) gives for the same row and token: a token's result does not
// depend on how many tokens share its step.
//
// Layout: the activations are packed once per call into panels of up to two SIMD vectors of tokens
// (`gemm_pack`), in the order's load order and grouped by partial: partial (q, l) of a segment
// holds its `steps` activations one after another, each as [panel width] floats (tokens past n
// zero), so that one load gives one column for a vector of tokens. The weights are dequantised a
// tile of rows at a time into f32, each segment partial by partial too, so that the weights a
// partial broadcasts are consecutive. The register block is kGemmRowBlock rows x one panel (12 x
// 32 on AVX-512: 24 accumulators): for each partial it runs over that partial's columns, and the
// partials merge in the order's tree. FP8 tiles stay within one 128-row block: their panel is
// multiplied by that block's scales first (step 3 of the order).
//
// The register block's inner loop is what it was before the order was imposed (measured then on
// Zen 4, one thread, bench-m shapes, weights dequantised from BF16 per tile: 93-109 GFLOP/s
// against 79-97 for dequantisation + OpenBLAS sgemm on the same tiles; the FMA peak of one core
// is ~117).
#pragma once

#include <cstdint>

#include "weights/weight.h"

namespace dsv3::cpu {

// Rows of the full register block (the dispatched target's; smaller blocks take the rest).
inline constexpr int64_t kGemmRowBlock = 12;

// Panels that n tokens make (gemm_pack packs a range of them, so that callers can split the work).
int64_t gemm_panels(int64_t n);

// Floats of packed activations, and doubles of FP8 unscale factors (n x segments), that gemm_pack
// writes for n tokens against w: they depend on w's dtype and cols only (two weights of the same
// dtype and width share a packing).
int64_t gemm_packed_floats(const Weight& w, int64_t n);
int64_t gemm_unscale_count(const Weight& w, int64_t n);

// Packs panels [p0, p1) of x [n, w.cols] (row stride x_stride) into xp and unscale.
void gemm_pack(const Weight& w, const float* x, int64_t n, int64_t x_stride, int64_t p0, int64_t p1, float* xp,
               double* unscale);

// Rows that gemm_rows dequantises at a time (FP8: a divisor of 128, so that callers splitting rows
// at multiples of it keep each tile in one block of scales), and the floats of per-thread scratch
// it needs.
int64_t gemm_tile_rows(const Weight& w);
int64_t gemm_scratch_floats(const Weight& w);

// y[t * y_stride + r - r0] for r in [r0, r1), t < n, from gemm_pack's output for all n tokens.
void gemm_rows(const Weight& w, int64_t r0, int64_t r1, const float* xp, const double* unscale, int64_t n, float* y,
               int64_t y_stride, float* scratch);

}  // namespace dsv3::cpu
