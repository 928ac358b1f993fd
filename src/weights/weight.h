// One weight as stored in the checkpoint: kernels read it in place, in its own format.
#pragma once

#include <cstdint>
#include <string>

#include "base/dtype.h"

namespace dsv3 {

struct Weight {
  std::string name;  // the checkpoint's tensor name
  DType dtype = DType::F32;
  int64_t rows = 0;  // 1-D tensors: rows = 1, cols = length
  int64_t cols = 0;
  const void* data = nullptr;  // [rows, cols] row-major, aligned to its element size
  // F8_E4M3 only: weight_scale_inv [ceil(rows/128), ceil(cols/128)] f32; the real value of
  // element (r, c) is e4m3(data[r, c]) * scale_inv[r / 128, c / 128].
  const float* scale_inv = nullptr;
  // Packed integers (compressed-tensors "pack-quantized", weights/packed_int.h): dtype I32 as
  // stored, data [rows, packed_cols()] int32, `bits` 4 or 8 per code; weight_scale [rows,
  // n_groups()] BF16; element (r, c) is code(r, c) * weight_scale[r, c / group_size] in f32
  // (exact: a 4- or 8-bit integer times a BF16 fits f32's mantissa). bits == 0: not packed.
  int bits = 0;
  int64_t group_size = 0;  // columns per scale (cols for one scale per row)
  const uint16_t* weight_scale = nullptr;

  bool present() const { return data != nullptr; }
  bool packed() const { return bits != 0; }
  int64_t scale_cols() const { return (cols + kFp8BlockSize - 1) / kFp8BlockSize; }
  int64_t packed_cols() const { return (cols * bits + 31) / 32; }
  int64_t n_groups() const { return (cols + group_size - 1) / group_size; }
  uint64_t data_bytes() const;  // stored bytes of `data` alone
  uint64_t bytes() const;       // stored bytes, scales included
};

// Element (r, c) as f32 (reference code and tests; kernels do not call this).
float weight_at(const Weight& w, int64_t r, int64_t c);

}  // namespace dsv3
