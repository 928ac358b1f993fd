// Decode attention's two products over a part of the latent cache, without packing: the query
// side is a handful of heads and the cache rows are read once per block of heads straight from
// the cache (OpenBLAS's sgemm packed the cache part before every product, ~half of the
// attention's time in decode). Single-threaded; Highway dispatches the best target at run time.
#pragma once

#include <cstdint>

namespace dsv3::cpu {

// s[h * ld + j] = scale · Σ_k q[h * k_len + k] · c[j * c_stride + k], for h < nq, j < m.
void attend_scores(const float* q, int64_t nq, int64_t k_len, const float* c, int64_t c_stride, int64_t m,
                   float scale, float* s, int64_t ld);

// o[h * len + k] = Σ_j p[h * ld + j] · c[j * c_stride + k], for h < nq, k < len (o overwritten).
void attend_values(const float* p, int64_t nq, int64_t ld, const float* c, int64_t c_stride, int64_t m, int64_t len,
                   float* o);

}  // namespace dsv3::cpu
