// Hand-checked cases for the reference ops whose semantics the goldens cover only partly.
#include "ops/reference/reference.h"

#include <gtest/gtest.h>

#include <cmath>

namespace dsv3 {
namespace {

Weight f32_weight(const std::vector<float>& v, int64_t rows, int64_t cols) {
  Weight w;
  w.dtype = DType::F32;
  w.rows = rows;
  w.cols = cols;
  w.data = v.data();
  return w;
}

RouteShape v3_shape(int64_t experts, int64_t k, int64_t groups, int64_t topk_groups) {
  return RouteShape{.n_routed_experts = experts,
                    .num_experts_per_tok = k,
                    .n_group = groups,
                    .topk_group = topk_groups,
                    .scoring_func = ScoringFunc::Sigmoid,
                    .topk_method = TopkMethod::NoauxTc,
                    .norm_topk_prob = true,
                    .routed_scaling_factor = 2.5f};
}

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

TEST(Reference, NoauxTcSelectsWithBiasWeighsWithout) {
  // 4 experts in 2 groups; the bias makes expert 3 win selection although its score is lowest.
  const std::vector<float> logits{2.0f, 1.0f, 0.5f, -1.0f};
  const std::vector<float> bias{0.0f, 0.0f, 0.0f, 5.0f};
  const Weight b = f32_weight(bias, 1, 4);
  RouteShape s = v3_shape(4, 2, 1, 1);
  s.e_score_correction_bias = &b;
  int32_t e[2];
  float w[2];
  ref::moe_route(s, logits.data(), 1, e, w);
  EXPECT_EQ(e[0], 3);
  EXPECT_EQ(e[1], 0);
  const float s3 = sigmoid(-1.0f), s0 = sigmoid(2.0f);
  EXPECT_FLOAT_EQ(w[0], s3 / (s3 + s0) * 2.5f);
  EXPECT_FLOAT_EQ(w[1], s0 / (s3 + s0) * 2.5f);
}

TEST(Reference, NoauxTcGroupScoreIsTopTwoSumAndDroppedGroupsAreMinusInfinity) {
  // Group 0 = {0,1}: max 0.9 but top-2 sum 0.9+(-5 biased) < group 1's 0.6+0.6.
  // Every biased score is negative, so masking dropped groups with 0.0 (HF) would pick from them.
  const std::vector<float> logits{0.0f, 0.0f, 0.0f, 0.0f};
  const std::vector<float> bias{-0.1f, -6.0f, -0.6f, -0.6f};  // sigmoid(0)=0.5 -> 0.4, -5.5, -0.1, -0.1
  const Weight b = f32_weight(bias, 1, 4);
  RouteShape s = v3_shape(4, 2, 2, 1);
  s.e_score_correction_bias = &b;
  int32_t e[2];
  float w[2];
  ref::moe_route(s, logits.data(), 1, e, w);
  EXPECT_EQ(std::min(e[0], e[1]), 2);
  EXPECT_EQ(std::max(e[0], e[1]), 3);
}

TEST(Reference, SoftmaxGreedyIsNotRenormalised) {
  const std::vector<float> logits{1.0f, 2.0f, 3.0f};
  RouteShape s{.n_routed_experts = 3,
               .num_experts_per_tok = 2,
               .scoring_func = ScoringFunc::Softmax,
               .topk_method = TopkMethod::Greedy,
               .norm_topk_prob = false,
               .routed_scaling_factor = 1.0f};
  int32_t e[2];
  float w[2];
  ref::moe_route(s, logits.data(), 1, e, w);
  const double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  EXPECT_EQ(e[0], 2);
  EXPECT_EQ(e[1], 1);
  EXPECT_NEAR(w[0], std::exp(3.0) / z, 1e-6);
  EXPECT_NEAR(w[1], std::exp(2.0) / z, 1e-6);
}

TEST(Reference, GroupLimitedGreedyUsesGroupMax) {
  // Groups {0,1} and {2,3}: group 0 has the single best expert; with max scoring it wins.
  const std::vector<float> logits{3.0f, -5.0f, 2.0f, 2.0f};
  RouteShape s{.n_routed_experts = 4,
               .num_experts_per_tok = 2,
               .n_group = 2,
               .topk_group = 1,
               .scoring_func = ScoringFunc::Softmax,
               .topk_method = TopkMethod::GroupLimitedGreedy,
               .routed_scaling_factor = 16.0f};
  int32_t e[2];
  float w[2];
  ref::moe_route(s, logits.data(), 1, e, w);
  EXPECT_EQ(e[0], 0);
  EXPECT_EQ(e[1], 1);
}

TEST(Reference, RopeRotatesAdjacentPairs) {
  std::vector<float> x{1.0f, 0.0f, 0.0f, 1.0f};
  const float inv_freq[] = {1.0f, 0.5f};
  const int32_t pos[] = {2};
  ref::rope(x.data(), 1, 4, 1, 0, 4, pos, inv_freq);
  EXPECT_NEAR(x[0], std::cos(2.0f), 1e-6);
  EXPECT_NEAR(x[1], std::sin(2.0f), 1e-6);
  EXPECT_NEAR(x[2], -std::sin(1.0f), 1e-6);
  EXPECT_NEAR(x[3], std::cos(1.0f), 1e-6);
}

TEST(Reference, Fp8DequantUsesTheBlockOfEachElement) {
  // 130 columns: the second column block (2 wide) is cut by the edge and has its own scale.
  std::vector<uint8_t> codes(2 * 130, 0x38);  // e4m3 1.0
  const std::vector<float> scales{0.5f, 3.0f};
  Weight w;
  w.dtype = DType::F8_E4M3;
  w.rows = 2;
  w.cols = 130;
  w.data = codes.data();
  w.scale_inv = scales.data();
  std::vector<float> row(130);
  ref::dequant_row(w, 1, row.data());
  EXPECT_EQ(row[0], 0.5f);
  EXPECT_EQ(row[127], 0.5f);
  EXPECT_EQ(row[128], 3.0f);
  EXPECT_EQ(row[129], 3.0f);
}

TEST(Reference, RmsNorm) {
  const std::vector<float> x{3.0f, 4.0f};
  const std::vector<float> g{1.0f, 2.0f};
  std::vector<float> out(2);
  ref::rms_norm(x.data(), 1, f32_weight(g, 1, 2), 0.0f, out.data());
  const float r = 1.0f / std::sqrt(12.5f);
  EXPECT_NEAR(out[0], 3.0f * r, 1e-6);
  EXPECT_NEAR(out[1], 8.0f * r, 1e-6);
}

}  // namespace
}  // namespace dsv3
