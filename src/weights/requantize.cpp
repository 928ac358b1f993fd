#include "weights/requantize.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "base/error.h"
#include "weights/fp8_block.h"

namespace dsv3 {

namespace {

bool shares_data(const ModelWeights& m, const Weight& w) {
  auto same = [&](const Weight& o) { return &o != &w && o.data == w.data; };
  if (same(m.embed_tokens) || same(m.lm_head)) return true;
  if (m.mtp && (same(m.mtp->embed_tokens) || same(m.mtp->shared_head_head))) return true;
  for (const auto& p : m.owned)
    if (static_cast<const void*>(p.get()) == w.data) return true;  // an aligned heap copy, not a file page
  return false;
}

// Drops the process's resident pages inside [p, p + n) (whole pages only); the file keeps them.
void release_pages(const void* p, size_t n) {
  const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  const uintptr_t b = (uintptr_t(p) + page - 1) / page * page, e = (uintptr_t(p) + n) / page * page;
  if (e > b) madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
}

}  // namespace

void requantize_fp8(Weight& w, ModelWeights& owner, ThreadPool& pool, bool release_source) {
  if (w.dtype == DType::F8_E4M3) return;
  if (w.dtype != DType::BF16 && w.dtype != DType::F16 && w.dtype != DType::F32)
    fail("requantize '{}': cannot quantise {} to FP8", w.name, dtype_name(w.dtype));
  const int64_t rows = w.rows, cols = w.cols, B = kFp8BlockSize, bands = (rows + B - 1) / B;
  const int64_t sc = w.scale_cols();
  const size_t code_bytes = size_t(rows * cols), scale_bytes = size_t(bands * sc) * sizeof(float);
  // Codes start on a 64-byte boundary: the decode kernels' vector loads then never straddle two
  // cache lines (FP8 rows 48 bytes off a boundary decoded ~1.8x slower from memory here).
  auto mem = std::make_unique<uint8_t[]>(code_bytes + scale_bytes + 16 + 64);
  uint8_t* codes = mem.get() + (64 - reinterpret_cast<uintptr_t>(mem.get()) % 64) % 64;
  float* scales = reinterpret_cast<float*>(codes + (code_bytes + 15) / 16 * 16);
  const bool release = release_source && !shares_data(owner, w);
  const size_t src_row_bytes = size_t(cols) * size_t(dtype_size(w.dtype));
  pool.parallel_for(bands, [&](int64_t b0, int64_t b1) {
    std::vector<float> band;
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t r0 = b * B, nr = std::min(B, rows - r0);
      band.resize(size_t(nr * cols));
      for (int64_t r = 0; r < nr; ++r)
        for (int64_t c = 0; c < cols; ++c) band[size_t(r * cols + c)] = weight_at(w, r0 + r, c);
      const Fp8Block q = quantize_fp8_blocks(band, nr, cols);
      std::memcpy(codes + r0 * cols, q.codes.data(), q.codes.size());
      std::memcpy(scales + b * sc, q.scale_inv.data(), q.scale_inv.size() * sizeof(float));
      if (release) release_pages(static_cast<const uint8_t*>(w.data) + size_t(r0) * src_row_bytes, size_t(nr) * src_row_bytes);
    }
  });
  w.dtype = DType::F8_E4M3;
  w.data = codes;
  w.scale_inv = scales;
  owner.owned.push_back(std::move(mem));
}

}  // namespace dsv3
