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

  bool present() const { return data != nullptr; }
  int64_t scale_cols() const { return (cols + kFp8BlockSize - 1) / kFp8BlockSize; }
  uint64_t bytes() const;  // stored bytes, scales included
};

// Element (r, c) as f32 (reference code and tests; kernels do not call this).
float weight_at(const Weight& w, int64_t r, int64_t c);

}  // namespace dsv3
