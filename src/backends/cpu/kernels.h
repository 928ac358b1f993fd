// SIMD kernels over weights as stored (F8_E4M3 with 128x128 block scales, BF16, F16, F32),
// compiled for every Highway target and dispatched at run time to the best one the CPU has
// (AVX-512, AVX2, ... , portable fallback). Single-threaded: callers split rows over threads.
#pragma once

#include <cstdint>

#include "weights/weight.h"

namespace dsv3::cpu {

// y[i * y_stride + (r - r0)] = dot(W[r, :], x[i * x_stride + 0 .. cols)) for r in [r0, r1),
// i < n, summed in dot_order-inl.h's order: each output's bits are those of gemm.h's for the same
// row and token, whatever n and the row range. Decodes each weight once per group of up to 4
// tokens: the decode (matrix-vector) kernel.
void matvec_rows(const Weight& w, int64_t r0, int64_t r1, const float* x, int64_t n, int64_t x_stride, float* y,
                 int64_t y_stride);

// out[i * out_stride + c] = Σ_{r in [r0, r1)} q[i * q_stride + r - r0] · W[r, c] for every column c
// and i < n (out is overwritten): Wᵀ·q over a band of rows (MLA folds q_nope through kv_b_proj this
// way). One fma per row in row order from 0, per token the same whatever n.
void matvec_t_rows(const Weight& w, int64_t r0, int64_t r1, const float* q, int64_t n, int64_t q_stride, float* out,
                   int64_t out_stride);
inline void matvec_t_rows(const Weight& w, int64_t r0, int64_t r1, const float* q, float* out) {
  matvec_t_rows(w, r0, r1, q, 1, 0, out, 0);
}

// out [r1 - r0, cols] f32 (row stride out_stride >= cols) = W[r0 .. r1, :] dequantised exactly
// (ref::dequant_row's values).
void dequant_rows(const Weight& w, int64_t r0, int64_t r1, float* out, int64_t out_stride);

// Row stride for a dequantised tile of `cols` floats: a stride of a multiple of 4 KiB (cols =
// 1024, 2048, ...) maps every row to the same cache sets (OpenBLAS's packing of such tiles ran
// 2-3x slower here).
inline int64_t padded_stride(int64_t cols) { return (cols + 15) / 16 * 16 + 16; }

// Σ p[0 .. n) in f32 with several accumulators: the streaming read of the bandwidth probe.
float sum_f32(const float* p, int64_t n);

// Name of the Highway target the dispatcher picks on this CPU (e.g. "AVX3", "AVX2").
const char* target_name();

}  // namespace dsv3::cpu
