// FP8 e4m3 weights with 128x128 block scales, as DeepSeek ships them: for each block,
// scale_inv = amax / 448 and code = e4m3(w / scale_inv); a block cut by the tensor edge uses the
// amax of its real part. Dequantisation is e4m3(code) * scale_inv in float32.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include <nlohmann/json.hpp>

namespace dsv3 {

struct Fp8Block {
  std::vector<uint8_t> codes;     // [rows, cols]
  std::vector<float> scale_inv;  // [ceil(rows/128), ceil(cols/128)]
};

Fp8Block quantize_fp8_blocks(std::span<const float> w, int64_t rows, int64_t cols);
// out [rows, cols] f32 (the exact products DeepSeek's fp8_cast_bf16.py computes before rounding).
void dequantize_fp8_blocks(std::span<const uint8_t> codes, std::span<const float> scale_inv, int64_t rows,
                           int64_t cols, float* out);

// The config.json "quantization_config" DeepSeek ships with these weights.
nlohmann::ordered_json fp8_quantization_config();

}  // namespace dsv3
