// Cutting bound weights down to one rank's part (shard_plan.h says which part).
//
// A row range of a row-major [rows, cols] tensor is contiguous: the rank keeps a view into the
// mapped shard and faults in only those pages. A column range would touch every page of the
// tensor, so it is copied into rank memory at load and the source pages are released. FP8
// weights keep their format when the cut falls on a 128-row (rows) or 128-column (columns)
// scale-block boundary; otherwise the slice is dequantised to F32 (exact per element: the f32
// product of e4m3 code and block scale, as the kernels form it), 4x its FP8 bytes. Packed integer
// weights (int4/int8 groups) are cut the same way: rows are a view, columns on whole 32-bit words
// and groups are copied, other column cuts become F32.
// DeepSeek-V3's own shapes split on block boundaries at 2, 4, 8 and 16 ranks.
#pragma once

#include <cstdint>

#include "base/thread_pool.h"
#include "weights/model_weights.h"
#include "weights/shard_plan.h"

namespace dsv3 {

// Rows [r.begin, r.end) of w: a view when possible, else an F32 copy owned by `owner`.
Weight slice_rows(const Weight& w, Range r, ModelWeights& owner);
// Columns [c.begin, c.end) of w, copied into memory owned by `owner`.
Weight slice_cols(const Weight& w, Range c, ModelWeights& owner);

// Replaces every sharded weight by this rank's part and drops the other ranks' routed experts
// (MoeWeights::expert_begin says where the kept ones start). No-op when !plan.sharded().
void shard_weights(ModelWeights& w, const ModelConfig& c, const ShardPlan& plan);

// What shard_weights would leave (shapes, dtypes, experts), without reading or copying any
// tensor data: the per-rank memory plan of `dsv3 info --world-size N`. The result's data
// pointers are the source's and must not be read.
ModelWeights plan_weights(const ModelWeights& w, const ModelConfig& c, const ShardPlan& plan);

// Bytes of the weights this rank holds (views and copies), for the memory plan.
uint64_t held_weight_bytes(const ModelWeights& w);

// Faults in the pages of the weights this rank holds (instead of every page of every shard).
void prefetch_weights(const ModelWeights& w, ThreadPool* pool);

}  // namespace dsv3
