#include "backends/cpu/cpu_backend.h"

#include <vector>

namespace dsv3 {

void CpuBackend::linear(const Weight& w, const float* x, int64_t n, float* y) {
  pool_.parallel_for(w.rows, [&](int64_t r0, int64_t r1) {
    std::vector<float> row(static_cast<size_t>(w.cols));
    for (int64_t r = r0; r < r1; ++r) {
      ref::dequant_row(w, r, row.data());
      for (int64_t i = 0; i < n; ++i) {
        const float* xi = x + i * w.cols;
        float acc[8] = {};
        int64_t c = 0;
        for (; c + 8 <= w.cols; c += 8)
          for (int j = 0; j < 8; ++j) acc[j] += xi[c + j] * row[size_t(c + j)];
        float sum = 0;
        for (; c < w.cols; ++c) sum += xi[c] * row[size_t(c)];
        for (int j = 0; j < 8; ++j) sum += acc[j];
        y[i * w.rows + r] = sum;
      }
    }
  });
}

}  // namespace dsv3
