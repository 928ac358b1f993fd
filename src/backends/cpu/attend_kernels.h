// Decode attention's two products over a part of the latent cache, without packing: the query
// side is a handful of heads and the cache rows are read once per block of heads straight from
// the cache (OpenBLAS's sgemm packed the cache part before every product, ~half of the
// attention's time in decode). The cache rows are given one pointer each, so that a part may
// span blocks of the paged cache (model/kv_cache.h) and its sums are those of contiguous rows.
// Single-threaded; Highway dispatches the best target at run time.
#pragma once

#include <cstdint>

#include "ops/backend.h"

namespace dsv3::cpu {

// s[h * ld + j] = scale · Σ_k q[h * k_len + k] · row_j[k], for h < nq, j < m, where row_j =
// rows[j] holds at least k_len values of type `dtype` (f32, or BF16 widened exactly).
void attend_scores(const float* q, int64_t nq, int64_t k_len, const void* const* rows, CacheDtype dtype, int64_t m,
                   float scale, float* s, int64_t ld);

// o[h * len + k] = Σ_j p[h * ld + j] · row_j[k], for h < nq, k < len (o overwritten); rows as above.
void attend_values(const float* p, int64_t nq, int64_t ld, const void* const* rows, CacheDtype dtype, int64_t m,
                   int64_t len, float* o);

}  // namespace dsv3::cpu
