// Decode attention's two products over a part of the latent cache, without packing: the query
// side is a handful of heads and the cache rows are read once per block of heads straight from
// the cache (OpenBLAS's sgemm packed the cache part before every product, ~half of the
// attention's time in decode). The cache rows come as runs of consecutive rows (one run per
// block of the paged cache, model/kv_cache.h, that a part of the context touches); the sums go
// over the rows in order whatever the runs, so they are those of contiguous rows.
// Single-threaded; Highway dispatches the best target at run time.
#pragma once

#include <cstdint>

#include "ops/backend.h"

namespace dsv3::cpu {

// `rows` consecutive cache rows from `first`, each `stride` values after the previous one.
struct RowRun {
  const void* first;
  int64_t rows;
};

// s[h * ld + j] = scale · Σ_k q[h * k_len + k] · row_j[k], for h < nq and the m rows j of the runs
// in order, each holding at least k_len values of type `dtype` (f32, or BF16 widened exactly).
void attend_scores(const float* q, int64_t nq, int64_t k_len, const RowRun* runs, int64_t n_runs, int64_t stride,
                   CacheDtype dtype, float scale, float* s, int64_t ld);

// o[h * len + k] = Σ_j p[h * ld + j] · row_j[k] over the rows of the runs in order, for h < nq,
// k < len (o overwritten).
void attend_values(const float* p, int64_t nq, int64_t ld, const RowRun* runs, int64_t n_runs, int64_t stride,
                   CacheDtype dtype, int64_t len, float* o);

// Softmax numerators of one row of scores: r[t] = exp(r[t] - max) in place for t < len (len >= 1);
// returns the max and sets `sum` to Σ r[t] (added in order, in double). The exponential is
// Highway's (contrib/math Exp, within a few ulp of exp), in vectors with a scalar-free tail, the
// same for a row whichever path of mla_attention computes it.
float exp_shifted(float* r, int64_t len, double& sum);

}  // namespace dsv3::cpu
