// Slicing weights for one rank (weights/shard.h): every element of a slice equals the source's
// element (views, FP8 copies and F32 fallbacks alike), and the paper plan of `dsv3 info
// --world-size` matches what the slicing holds.
#include "weights/shard.h"

#include <gtest/gtest.h>

#include "base/error.h"
#include "weights/loaded_checkpoint.h"
#include "weights/packed_quantize.h"

namespace dsv3 {
namespace {

void expect_same(const Weight& src, const Weight& s, int64_t r0, int64_t c0) {
  for (int64_t r = 0; r < s.rows; ++r)
    for (int64_t c = 0; c < s.cols; ++c)
      ASSERT_EQ(weight_at(s, r, c), weight_at(src, r0 + r, c0 + c)) << src.name << " at " << r << "," << c;
}

TEST(Shard, SlicesEqualTheSourceElementsInEveryFormat) {
  auto lc = LoadedCheckpoint::load("tests/data/golden/v3-wide-fp8");
  ModelWeights& w = lc->weights;
  const Weight q = w.layers[0].self_attn.q_b_proj;  // F8_E4M3 [3 * 32, 160]
  ASSERT_EQ(q.dtype, DType::F8_E4M3);
  for (Range r : {Range{0, 32}, Range{32, 96}, Range{0, 96}}) {
    const Weight s = slice_rows(q, r, w);
    EXPECT_EQ(s.rows, r.count());
    expect_same(q, s, r.begin, 0);
  }
  const Weight o = w.layers[0].self_attn.o_proj;  // F8_E4M3 [320, 3 * 40]
  for (Range c : {Range{0, 40}, Range{40, 120}, Range{0, 120}}) {
    const Weight s = slice_cols(o, c, w);
    EXPECT_EQ(s.cols, c.count());
    expect_same(o, s, 0, c.begin);
  }
  // Block-aligned FP8 cuts stay FP8 (a view for rows); unaligned ones become F32.
  const Weight d = w.layers[0].mlp.down_proj;  // [320, 400]
  EXPECT_EQ(slice_cols(d, Range{128, 400}, w).dtype, DType::F8_E4M3);
  EXPECT_EQ(slice_cols(d, Range{100, 400}, w).dtype, DType::F32);
  const Weight g = w.layers[0].mlp.gate_proj;  // [400, 320]
  const Weight gv = slice_rows(g, Range{128, 400}, w);
  EXPECT_EQ(gv.dtype, DType::F8_E4M3);
  EXPECT_EQ(gv.data, static_cast<const uint8_t*>(g.data) + 128 * g.cols);
  expect_same(d, slice_cols(d, Range{128, 400}, w), 0, 128);
  expect_same(d, slice_cols(d, Range{100, 400}, w), 0, 100);
  expect_same(g, gv, 128, 0);
  const Weight e = w.embed_tokens;  // BF16 [700, 320]
  expect_same(e, slice_rows(e, Range{233, 466}, w), 233, 0);
}

TEST(Shard, PackedIntSlicesEqualTheSourceElements) {
  // int4 codes in groups of 32 over [40, 96] (compressed-tensors pack-quantized, weights/packed_int.h).
  const int64_t rows = 40, cols = 96;
  std::vector<uint16_t> src(size_t(rows * cols));
  for (size_t i = 0; i < src.size(); ++i) src[i] = f32_to_bf16(float(int(i * 7919 % 41) - 20) / 16.0f);
  const PackedQuantized q = quantize_packed(src, rows, cols, 4, 32);
  Weight w;
  w.name = "packed";
  w.dtype = DType::I32;
  w.rows = rows;
  w.cols = cols;
  w.data = q.packed.data();
  w.bits = 4;
  w.group_size = 32;
  w.weight_scale = q.scale.data();
  ModelWeights owner;
  const Weight r = slice_rows(w, Range{13, 29}, owner);
  EXPECT_TRUE(r.packed());
  expect_same(w, r, 13, 0);
  const Weight c = slice_cols(w, Range{32, 96}, owner);  // whole words and groups: stays packed
  EXPECT_TRUE(c.packed());
  expect_same(w, c, 0, 32);
  const Weight f = slice_cols(w, Range{20, 70}, owner);  // mid-group: F32
  EXPECT_EQ(f.dtype, DType::F32);
  expect_same(w, f, 0, 20);
}

TEST(Shard, ThePlanHoldsWhatTheSlicingHolds) {
  for (const char* dir : {"tests/data/golden/v3-wide-fp8", "tests/data/golden/v3-tiny-fp8",
                          "tests/data/golden/v2-lite-tiny-bf16"}) {
    for (int world : {2, 3}) {
      uint64_t sum = 0;
      for (int rank = 0; rank < world; ++rank) {
        auto lc = LoadedCheckpoint::load(dir);
        const ShardPlan p = ShardPlan::make(lc->config, rank, world);
        const uint64_t planned = held_weight_bytes(plan_weights(lc->weights, lc->config, p));
        shard_weights(lc->weights, lc->config, p);
        EXPECT_EQ(held_weight_bytes(lc->weights), planned) << dir << " rank " << rank << " of " << world;
        EXPECT_EQ(int64_t(lc->weights.layers.back().moe.experts.size()), p.experts.count());
        EXPECT_EQ(lc->weights.layers.back().moe.expert_begin, p.experts.begin);
        sum += planned;
      }
      auto whole = LoadedCheckpoint::load(dir);
      EXPECT_GT(sum, held_weight_bytes(whole->weights)) << "replicated weights count on every rank";
    }
  }
}

TEST(Shard, APlanThatLeavesARankEmptyNamesTheFieldAndTheWorldSize) {
  auto lc = LoadedCheckpoint::load("tests/data/golden/v3-tiny-fp8");  // 4 heads
  try {
    ShardPlan::make(lc->config, 0, 5);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'num_attention_heads' is 4; it cannot be split over a world size of 5"),
              std::string::npos)
        << e.what();
  }
}

TEST(Shard, SplitRangesCoverEveryUnitOnce) {
  for (int64_t n : {1, 3, 7, 16, 129280})
    for (int world = 1; world <= 8 && world <= n; ++world) {
      int64_t next = 0;
      for (int r = 0; r < world; ++r) {
        const Range x = split_range(n, 1, r, world);
        EXPECT_EQ(x.begin, next);
        EXPECT_GE(x.count(), n / world);
        EXPECT_LE(x.count(), n / world + 1);
        next = x.end;
      }
      EXPECT_EQ(next, n);
    }
}

}  // namespace
}  // namespace dsv3
