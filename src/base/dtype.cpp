#include "base/dtype.h"

#include <array>
#include <cmath>

namespace dsv3 {

namespace {
struct DTypeInfo {
  DType type;
  std::string_view name;
  int size;
};
constexpr std::array<DTypeInfo, 11> kDTypes{{{DType::F32, "F32", 4},
                                             {DType::F16, "F16", 2},
                                             {DType::BF16, "BF16", 2},
                                             {DType::F8_E4M3, "F8_E4M3", 1},
                                             {DType::I64, "I64", 8},
                                             {DType::I32, "I32", 4},
                                             {DType::I16, "I16", 2},
                                             {DType::I8, "I8", 1},
                                             {DType::U8, "U8", 1},
                                             {DType::BOOL, "BOOL", 1},
                                             {DType::F64, "F64", 8}}};

std::array<float, 256> make_e4m3_table() {
  std::array<float, 256> t{};
  for (int b = 0; b < 256; ++b) {
    const float sign = (b & 0x80) ? -1.0f : 1.0f;
    const int e = (b >> 3) & 0xF, m = b & 0x7;
    if (e == 0xF && m == 0x7)
      t[b] = std::nanf("");
    else if (e == 0)
      t[b] = sign * std::ldexp(float(m) / 8.0f, -6);
    else
      t[b] = sign * std::ldexp(1.0f + float(m) / 8.0f, e - 7);
  }
  return t;
}
const std::array<float, 256> kE4m3 = make_e4m3_table();
}  // namespace

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const auto& d : kDTypes)
    if (d.name == name) return d.type;
  return std::nullopt;
}

std::string_view dtype_name(DType t) {
  for (const auto& d : kDTypes)
    if (d.type == t) return d.name;
  return "?";
}

int dtype_size(DType t) {
  for (const auto& d : kDTypes)
    if (d.type == t) return d.size;
  return 0;
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  const int e = (h >> 10) & 0x1F;
  const uint32_t m = h & 0x3FF;
  if (e == 0) {  // zero or subnormal: m * 2^-24
    const float v = std::ldexp(float(m), -24);
    return sign ? -v : v;
  }
  if (e == 31) return bits_to_f32(sign | 0x7f800000u | (m << 13));
  return bits_to_f32(sign | (uint32_t(e - 15 + 127) << 23) | (m << 13));
}

float e4m3_to_f32(uint8_t b) { return kE4m3[b]; }

const float* e4m3_table() { return kE4m3.data(); }

uint8_t f32_to_e4m3(float f) {
  if (std::isnan(f)) return 0x7f;
  const uint8_t sign = std::signbit(f) ? 0x80 : 0;
  const float a = std::min(std::fabs(f), 448.0f);
  if (a < 0.015625f) {
    // Subnormal range (below 2^-6): value = m * 2^-9. m == 8 is 2^-6, code 0x08, the first
    // normal: the codes are contiguous in value, so no special case.
    return uint8_t(std::nearbyint(a * 512.0f)) | sign;
  }
  // Round the f32 mantissa to 3 bits, ties to even, then rebias the exponent (127 -> 7).
  uint32_t u = f32_to_bits(a);
  u += 0x7ffffu + ((u >> 20) & 1u);
  return uint8_t((u >> 20) - ((127u - 7u) << 3)) | sign;
}

}  // namespace dsv3
