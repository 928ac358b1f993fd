// Symmetric integer quantisation of BF16 weights into compressed-tensors' pack-quantized format,
// computed as the library computes it for a model loaded in bfloat16 (its minmax observer,
// calculate_qparams, _quantize and pack_to_int32), so that the output is bit-identical:
//   scale = bf16(max(|min|, |max|) of the group (with 0 included) / ((2^bits - 1) / 2)), the
//           division in f32 rounded to BF16 (torch's bfloat16 arithmetic); a zero scale becomes
//           BF16's eps (2^-7), as calculate_qparams does;
//   code  = round_half_even(clamp(bf16(w / scale), -2^(bits-1), 2^(bits-1) - 1)), the quotient
//           rounded to BF16 before it is rounded to an integer (a float32 quotient changes ~2% of
//           the codes);
//   packed as weights/packed_int.h describes.
// tests/data/int4/ holds the library's own outputs for these rules and the command that made them.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace dsv3 {

struct PackedQuantized {
  std::vector<int32_t> packed;  // [rows, ceil(cols * bits / 32)]
  std::vector<uint16_t> scale;  // [rows, cols / group_size] BF16
};

// w [rows, cols] BF16; bits 4 or 8; group_size divides cols (cols itself: one scale per row).
PackedQuantized quantize_packed(std::span<const uint16_t> w, int64_t rows, int64_t cols, int bits, int64_t group_size);

}  // namespace dsv3
