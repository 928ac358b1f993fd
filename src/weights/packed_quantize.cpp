#include "weights/packed_quantize.h"

#include <algorithm>
#include <cmath>

#include "base/dtype.h"
#include "base/error.h"

namespace dsv3 {

PackedQuantized quantize_packed(std::span<const uint16_t> w, int64_t rows, int64_t cols, int bits, int64_t group_size) {
  DSV3_CHECK(bits == 4 || bits == 8, "quantize_packed: bits must be 4 or 8");
  DSV3_CHECK(group_size > 0 && cols % group_size == 0, "quantize_packed: group_size must divide cols");
  DSV3_CHECK(int64_t(w.size()) == rows * cols, "quantize_packed: w must hold rows * cols values");
  const int64_t n_groups = cols / group_size, words = (cols * bits + 31) / 32, per_word = 32 / bits;
  const float q_min = -float(1 << (bits - 1)), q_max = float((1 << (bits - 1)) - 1);
  const float half_range = (q_max - q_min) / 2.0f;  // calculate_qparams: bit_range / 2
  const uint16_t eps = f32_to_bf16(0x1p-7f);        // torch.finfo(torch.bfloat16).eps
  PackedQuantized out;
  out.packed.assign(size_t(rows * words), 0);
  out.scale.resize(size_t(rows * n_groups));
  for (int64_t r = 0; r < rows; ++r) {
    uint32_t* prow = reinterpret_cast<uint32_t*>(out.packed.data()) + r * words;
    for (int64_t g = 0; g < n_groups; ++g) {
      const uint16_t* x = w.data() + r * cols + g * group_size;
      float mn = 0.0f, mx = 0.0f;  // min(min, 0) and max(max, 0)
      for (int64_t i = 0; i < group_size; ++i) {
        const float v = bf16_to_f32(x[i]);
        mn = std::min(mn, v);
        mx = std::max(mx, v);
      }
      uint16_t s = f32_to_bf16(std::max(std::fabs(mn), std::fabs(mx)) / half_range);
      if (bf16_to_f32(s) == 0.0f) s = eps;
      out.scale[size_t(r * n_groups + g)] = s;
      const float sf = bf16_to_f32(s);
      for (int64_t i = 0; i < group_size; ++i) {
        const float q = bf16_to_f32(f32_to_bf16(bf16_to_f32(x[i]) / sf));
        const int code = int(std::nearbyint(std::clamp(q, q_min, q_max)));  // half to even
        const int64_t c = g * group_size + i;
        prow[c / per_word] |= uint32_t(code - int(q_min)) << (int(c % per_word) * bits);
      }
    }
  }
  return out;
}

}  // namespace dsv3
