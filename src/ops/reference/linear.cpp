#include <cmath>
#include <vector>

#include "base/error.h"
#include "ops/reference/reference.h"
#include "weights/packed_int.h"

namespace dsv3::ref {

void dequant_row(const Weight& w, int64_t r, float* out) {
  const int64_t cols = w.cols;
  if (w.packed()) {  // code * BF16 scale of its group, exact in f32 (weight.h)
    const auto* row = static_cast<const int32_t*>(w.data) + r * w.packed_cols();
    const uint16_t* s = w.weight_scale + r * w.n_groups();
    for (int64_t c = 0; c < cols; ++c) out[c] = float(packed_code(row, w.bits, c)) * bf16_to_f32(s[c / w.group_size]);
    return;
  }
  switch (w.dtype) {
    case DType::F32: {
      const float* p = static_cast<const float*>(w.data) + r * cols;
      for (int64_t c = 0; c < cols; ++c) out[c] = p[c];
      return;
    }
    case DType::BF16: {
      const uint16_t* p = static_cast<const uint16_t*>(w.data) + r * cols;
      for (int64_t c = 0; c < cols; ++c) out[c] = bf16_to_f32(p[c]);
      return;
    }
    case DType::F16: {
      const uint16_t* p = static_cast<const uint16_t*>(w.data) + r * cols;
      for (int64_t c = 0; c < cols; ++c) out[c] = f16_to_f32(p[c]);
      return;
    }
    case DType::F8_E4M3: {
      const uint8_t* p = static_cast<const uint8_t*>(w.data) + r * cols;
      const float* s = w.scale_inv + (r / kFp8BlockSize) * w.scale_cols();
      for (int64_t c = 0; c < cols; ++c) out[c] = e4m3_to_f32(p[c]) * s[c / kFp8BlockSize];
      return;
    }
    default: DSV3_CHECK(false, "dequant_row: unsupported dtype " + std::string(dtype_name(w.dtype)));
  }
}

void embed(const Weight& table, std::span<const int32_t> ids, float* out) {
  for (size_t i = 0; i < ids.size(); ++i) {
    DSV3_CHECK(ids[i] >= 0 && ids[i] < table.rows, "token id out of range");
    dequant_row(table, ids[i], out + int64_t(i) * table.cols);
  }
}

void rms_norm_rows(const float* x, int64_t n, int64_t d, const float* g, float eps, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    double ss = 0;
    for (int64_t c = 0; c < d; ++c) ss += double(x[i * d + c]) * x[i * d + c];
    const float r = float(1.0 / std::sqrt(ss / double(d) + double(eps)));
    for (int64_t c = 0; c < d; ++c) out[i * d + c] = x[i * d + c] * r * g[c];
  }
}

void rms_norm(const float* x, int64_t n, const Weight& w, float eps, float* out) {
  std::vector<float> g(static_cast<size_t>(w.cols));
  dequant_row(w, 0, g.data());
  rms_norm_rows(x, n, w.cols, g.data(), eps, out);
}

void linear(const Weight& w, const float* x, int64_t n, float* y) {
  std::vector<float> row(static_cast<size_t>(w.cols));
  for (int64_t r = 0; r < w.rows; ++r) {
    dequant_row(w, r, row.data());
    for (int64_t i = 0; i < n; ++i) {
      const float* xi = x + i * w.cols;
      double acc = 0;
      for (int64_t c = 0; c < w.cols; ++c) acc += double(xi[c]) * row[size_t(c)];
      y[i * w.rows + r] = float(acc);
    }
  }
}

}  // namespace dsv3::ref
