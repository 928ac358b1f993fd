// Element types of checkpoint tensors and exact scalar conversions between them.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace dsv3 {

enum class DType { F32, F16, BF16, F8_E4M3, I64, I32, I16, I8, U8, BOOL, F64 };

// The safetensors spelling ("F8_E4M3", "BF16", ...), or nullopt for one we do not know.
std::optional<DType> dtype_from_name(std::string_view name);
std::string_view dtype_name(DType t);
int dtype_size(DType t);

inline float bits_to_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t f32_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline float bf16_to_f32(uint16_t b) { return bits_to_f32(uint32_t(b) << 16); }

// Round to nearest even, as torch's .to(torch.bfloat16) and DeepSeek's fp8_cast_bf16.py do.
// NaN stays NaN (quiet).
inline uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

float f16_to_f32(uint16_t h);

// float8 e4m3fn (OCP FP8): bias 7, no infinities, NaN at 0x7f/0xff, max 448.
float e4m3_to_f32(uint8_t b);
// Nearest e4m3fn code, ties to even, saturating at +-448 (as torch's float8 cast of the
// already-scaled value in DeepSeek's and our quantisers). NaN maps to 0x7f.
uint8_t f32_to_e4m3(float f);

// The 256 e4m3 values as f32, for reference code and tests.
const float* e4m3_table();

constexpr int kFp8BlockSize = 128;  // DeepSeek's weight_block_size [128, 128]

}  // namespace dsv3
