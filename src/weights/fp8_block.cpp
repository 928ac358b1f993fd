#include "weights/fp8_block.h"

#include <algorithm>
#include <cmath>

#include "base/dtype.h"

namespace dsv3 {

Fp8Block quantize_fp8_blocks(std::span<const float> w, int64_t rows, int64_t cols) {
  const int64_t B = kFp8BlockSize, sr = (rows + B - 1) / B, sc = (cols + B - 1) / B;
  Fp8Block q;
  q.codes.resize(size_t(rows * cols));
  q.scale_inv.resize(size_t(sr * sc));
  for (int64_t br = 0; br < sr; ++br) {
    for (int64_t bc = 0; bc < sc; ++bc) {
      const int64_t r1 = std::min(rows, (br + 1) * B), c1 = std::min(cols, (bc + 1) * B);
      float amax = 0;
      for (int64_t r = br * B; r < r1; ++r)
        for (int64_t c = bc * B; c < c1; ++c) amax = std::max(amax, std::fabs(w[size_t(r * cols + c)]));
      const float s = std::max(amax, 1e-12f) / 448.0f;
      q.scale_inv[size_t(br * sc + bc)] = s;
      for (int64_t r = br * B; r < r1; ++r)
        for (int64_t c = bc * B; c < c1; ++c) q.codes[size_t(r * cols + c)] = f32_to_e4m3(w[size_t(r * cols + c)] / s);
    }
  }
  return q;
}

void dequantize_fp8_blocks(std::span<const uint8_t> codes, std::span<const float> scale_inv, int64_t rows,
                           int64_t cols, float* out) {
  const int64_t B = kFp8BlockSize, sc = (cols + B - 1) / B;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      out[r * cols + c] = e4m3_to_f32(codes[size_t(r * cols + c)]) * scale_inv[size_t((r / B) * sc + c / B)];
}

nlohmann::ordered_json fp8_quantization_config() {
  return {{"activation_scheme", "dynamic"},
          {"fmt", "e4m3"},
          {"quant_method", "fp8"},
          {"weight_block_size", {kFp8BlockSize, kFp8BlockSize}}};
}

}  // namespace dsv3
