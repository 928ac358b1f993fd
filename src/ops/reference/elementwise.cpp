#include <cmath>

#include "ops/reference/reference.h"

namespace dsv3::ref {

float silu(float x) { return x / (1.0f + std::exp(-x)); }

void rope(float* x, int64_t n, int64_t token_stride, int64_t n_vec, int64_t vec_stride, int64_t rope_dim,
          const int32_t* pos, const float* inv_freq) {
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t i = 0; i < rope_dim / 2; ++i) {
      // model.py: freqs_cis = polar(1, outer(t, freqs)) in float32, so the angle is a float32 product.
      const float angle = float(pos[t]) * inv_freq[i];
      const float c = std::cos(angle), s = std::sin(angle);
      for (int64_t v = 0; v < n_vec; ++v) {
        float* p = x + t * token_stride + v * vec_stride + 2 * i;
        const float a = p[0], b = p[1];
        p[0] = a * c - b * s;
        p[1] = a * s + b * c;
      }
    }
  }
}

}  // namespace dsv3::ref
