// Integer codes packed in int32 words as compressed-tensors' pack_to_int32 writes them
// (src/compressed_tensors/compressors/pack_quantized/helpers.py): each row on its own, element c
// of a row at bits [c·b, c·b + b) of the row's bit stream, word w holding bits [32w, 32w + 32)
// from its least significant bit (b = 4: eight codes per word, column 8w + k at bits 4k..4k+3;
// b = 8: four per word), stored as the unsigned value + 2^(b-1) (code -8 is 0, 7 is 15). Rows
// take ceil(cols·b / 32) words, the last one zero-padded. Only b dividing 32 (4, 8) is read here.
#pragma once

#include <cstdint>

namespace dsv3 {

// The signed code of column c of a packed row.
inline int packed_code(const int32_t* row, int bits, int64_t c) {
  const int per_word = 32 / bits;
  const uint32_t word = uint32_t(row[c / per_word]);
  const int shift = int(c % per_word) * bits;
  return int((word >> shift) & ((1u << bits) - 1u)) - (1 << (bits - 1));
}

}  // namespace dsv3
