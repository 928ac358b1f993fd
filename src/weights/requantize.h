// Re-storing a weight in FP8 at load time (e.g. `dsv3 bench --fp8-head`): DeepSeek ships the
// lm_head and embedding in BF16, which is ~half of what a decode token of a small model reads.
#pragma once

#include "base/thread_pool.h"
#include "weights/model_weights.h"

namespace dsv3 {

// Quantises a BF16/F16/F32 weight to F8_E4M3 with 128x128 block scales (scale_inv = amax/448,
// as quantize_fp8_blocks) into memory owned by `owner.owned`, and points `w` at it. With
// `release_source` (only for weights bound to a read-only mapped checkpoint), the source pages are
// dropped from the process as each band is done, unless another weight shares them or they are
// one of owner.owned's heap copies, so resident memory never holds both copies. No-op for FP8.
void requantize_fp8(Weight& w, ModelWeights& owner, ThreadPool& pool, bool release_source = false);

}  // namespace dsv3
