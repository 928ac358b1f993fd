#include "base/dtype.h"

#include <gtest/gtest.h>

#include <cmath>

namespace dsv3 {
namespace {

TEST(DType, NamesRoundTrip) {
  for (auto n : {"F32", "F16", "BF16", "F8_E4M3", "I64"}) {
    auto t = dtype_from_name(n);
    ASSERT_TRUE(t.has_value()) << n;
    EXPECT_EQ(dtype_name(*t), n);
  }
  EXPECT_FALSE(dtype_from_name("F8_E5M2").has_value());
  EXPECT_EQ(dtype_size(DType::F8_E4M3), 1);
  EXPECT_EQ(dtype_size(DType::BF16), 2);
}

TEST(DType, E4m3KnownValues) {
  EXPECT_EQ(e4m3_to_f32(0x00), 0.0f);
  EXPECT_EQ(e4m3_to_f32(0x38), 1.0f);         // e=7, m=0
  EXPECT_EQ(e4m3_to_f32(0x7e), 448.0f);       // max finite
  EXPECT_EQ(e4m3_to_f32(0xfe), -448.0f);
  EXPECT_EQ(e4m3_to_f32(0x01), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_TRUE(std::isnan(e4m3_to_f32(0x7f)));
  EXPECT_TRUE(std::isnan(e4m3_to_f32(0xff)));
}

TEST(DType, E4m3EncodeIsNearestAndSaturates) {
  for (int b = 0; b < 256; ++b) {
    if ((b & 0x7f) == 0x7f) continue;
    const float v = e4m3_to_f32(uint8_t(b));
    const uint8_t back = f32_to_e4m3(v);
    EXPECT_EQ(e4m3_to_f32(back), v) << b;  // +0/-0 compare equal
  }
  EXPECT_EQ(f32_to_e4m3(1000.0f), 0x7e);
  EXPECT_EQ(f32_to_e4m3(-1000.0f), 0xfe);
  // 1.0625 lies halfway between 1.0 (m=0) and 1.125 (m=1): ties go to the even code.
  EXPECT_EQ(f32_to_e4m3(1.0625f), 0x38);
  EXPECT_EQ(f32_to_e4m3(1.1f), 0x39);
}

// Brute force over every code: the nearest value, ties to the even code.
TEST(DType, E4m3EncodeMatchesBruteForceNearest) {
  uint32_t state = 12345;
  for (int i = 0; i < 200000; ++i) {
    state = state * 1664525u + 1013904223u;
    const float f = std::ldexp(float(int32_t(state)) / 2147483648.0f, int(state % 24) - 14);
    const float a = std::min(std::fabs(f), 448.0f);
    int best = 0;
    for (int c = 1; c <= 0x7e; ++c) {
      const float d = std::fabs(e4m3_to_f32(uint8_t(c)) - a), db = std::fabs(e4m3_to_f32(uint8_t(best)) - a);
      if (d < db || (d == db && (c & 1) == 0)) best = c;
    }
    const uint8_t want = uint8_t(best) | (std::signbit(f) ? 0x80 : 0);
    ASSERT_EQ(f32_to_e4m3(f), want) << f;
  }
}

TEST(DType, Bf16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(bf16_to_f32(0x3f80), 1.0f);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1.0).
  EXPECT_EQ(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  // 1 + 3*2^-8 is halfway between 1+2^-7 (odd) and 1+2^-6 (even).
  EXPECT_EQ(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::nanf("")))));
}

TEST(DType, F16Decodes) {
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0xc000), -2.0f);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(f16_to_f32(0x7bff), 65504.0f);
  EXPECT_TRUE(std::isinf(f16_to_f32(0x7c00)));
}

}  // namespace
}  // namespace dsv3
