// requantize_fp8 (the --fp8-head path): a BF16 weight re-stored as FP8 must hold exactly what
// quantize_fp8_blocks makes of the same values, and the CPU backend must read it as FP8.
#include "weights/requantize.h"

#include <gtest/gtest.h>

#include "backends/cpu/test_weights.h"
#include "weights/fp8_block.h"

namespace dsv3 {
namespace {

TEST(RequantizeFp8, MatchesBlockQuantiserOnEveryBand) {
  ThreadPool pool(2);
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{300, 129}, {128, 256}, {1, 7}}) {
    auto src = testing::random_weight(DType::BF16, rows, cols, 3);
    std::vector<float> values(static_cast<size_t>(rows * cols));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) values[size_t(r * cols + c)] = weight_at(src->w, r, c);
    const Fp8Block want = quantize_fp8_blocks(values, rows, cols);

    ModelWeights owner;
    Weight w = src->w;
    requantize_fp8(w, owner, pool);
    ASSERT_EQ(w.dtype, DType::F8_E4M3);
    ASSERT_NE(w.scale_inv, nullptr);
    const auto* codes = static_cast<const uint8_t*>(w.data);
    for (size_t i = 0; i < want.codes.size(); ++i) ASSERT_EQ(codes[i], want.codes[i]) << i;
    for (size_t i = 0; i < want.scale_inv.size(); ++i) ASSERT_EQ(w.scale_inv[i], want.scale_inv[i]) << i;
    EXPECT_EQ(owner.owned.size(), 1u);
  }
}

}  // namespace
}  // namespace dsv3
