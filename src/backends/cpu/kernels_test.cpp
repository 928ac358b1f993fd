// Every kernel in kernels.h against the scalar reference, on every Highway target this CPU runs,
// at sizes with remainders (1, 7, 127, 128, 129, 300) and 1..9 tokens.
//
// Tolerance: the weights dequantise exactly (dequant_rows must match ref::dequant_row bit for
// bit), so only f32 accumulation differs from the reference's double. Summing K products in f32
// in any order errs by at most about K * 2^-24 * Σ|x_i w_i| (recursive summation bound, Higham
// 3.1), so we allow 2 * K * 2^-24 * Σ|x_i w_i| per output.
#include "backends/cpu/kernels.h"

#include <gtest/gtest.h>

#include <sys/mman.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <string>

#include "backends/cpu/test_weights.h"
#include "ops/reference/reference.h"

namespace dsv3 {
namespace {

using testing::double_sum;
using testing::for_each_target;
using testing::random_vector;
using testing::random_weight;

const DType kDtypes[] = {DType::F8_E4M3, DType::BF16, DType::F16, DType::F32};
const std::pair<int64_t, int64_t> kShapes[] = {{1, 1},     {7, 7},     {1, 128},   {3, 127},  {128, 129},
                                               {129, 300}, {300, 256}, {130, 33},  {5, 1000}, {257, 64}};


double bound(int64_t k, double abs_sum) { return 2.0 * double(k) * std::ldexp(1.0, -24) * abs_sum + 1e-30; }

TEST(CpuKernels, DequantRowsMatchesReferenceExactly) {
  for_each_target([] {
    for (DType dt : kDtypes)
      for (auto [rows, cols] : kShapes) {
        auto w = random_weight(dt, rows, cols, uint32_t(rows * 31 + cols));
        const int64_t ld = cpu::padded_stride(cols);
        std::vector<float> got(static_cast<size_t>(rows * ld)), want(static_cast<size_t>(cols));
        cpu::dequant_rows(w->w, 0, rows, got.data(), ld);
        for (int64_t r = 0; r < rows; ++r) {
          ref::dequant_row(w->w, r, want.data());
          for (int64_t c = 0; c < cols; ++c)
            ASSERT_EQ(got[size_t(r * ld + c)], want[size_t(c)]) << dtype_name(dt) << " " << r << "," << c;
        }
      }
  });
}

// matvec_rows over rows [r0, r1) of n tokens (x row stride xs, y row stride ys) against the double
// product of the reference's dequantised rows, within bound().
void expect_matvec_matches(const Weight& w, int64_t r0, int64_t r1, const std::vector<float>& x, int64_t n,
                           int64_t xs, int64_t ys, const std::string& what) {
  const int64_t cols = w.cols;
  std::vector<float> y(static_cast<size_t>(n * ys), NAN), row(static_cast<size_t>(cols));
  cpu::matvec_rows(w, r0, r1, x.data(), n, xs, y.data(), ys);
  for (int64_t r = r0; r < r1; ++r) {
    ref::dequant_row(w, r, row.data());
    for (int64_t i = 0; i < n; ++i) {
      const auto d = double_sum(cols, [&](int64_t c) { return double(row[size_t(c)]) * x[size_t(i * xs + c)]; });
      ASSERT_NEAR(y[size_t(i * ys + r - r0)], d.sum, bound(cols, d.abs_sum)) << what << " r=" << r << " i=" << i;
    }
  }
}

TEST(CpuKernels, MatvecRowsMatchesReference) {
  for_each_target([] {
    for (DType dt : kDtypes)
      for (auto [rows, cols] : kShapes)
        for (int64_t n : {1, 2, 3, 4, 5, 9}) {
          auto w = random_weight(dt, rows, cols, uint32_t(rows + cols * 7));
          const int64_t xs = cols + 3, ys = rows + 2;  // strides wider than the rows
          auto x = random_vector(n * xs, uint32_t(n));
          // A band of rows in the middle, as a thread would get.
          ASSERT_NO_FATAL_FAILURE(expect_matvec_matches(
              w->w, rows / 3, rows, x, n, xs, ys,
              std::string(dtype_name(dt)) + " " + std::to_string(rows) + "x" + std::to_string(cols) +
                  " n=" + std::to_string(n)));
        }
  });
}

// Every e4m3 code (subnormals, zeros of both signs, the largest finite) through the one-token
// decode kernel, with one-hot activations so that the answer is the code's value times its block
// scale times x. Scales and x have few significant bits, so every product is exact in f32 and the
// kernel must reproduce it bit for bit, including activations far from 1 (its scaled copy of x
// must neither overflow nor push products into the subnormal range).
TEST(CpuKernels, MatvecEveryE4m3CodeIsExact) {
  std::vector<uint8_t> codes;
  for (int b = 0; b < 256; ++b)
    if ((b & 0x7f) != 0x7f) codes.push_back(uint8_t(b));  // 0x7f / 0xff are NaN
  const int64_t rows = int64_t(codes.size());
  // 256 columns: whole blocks (the one-token kernel's fast loop); 300: blocks 0, 1 and a partial
  // block 2 (vector and scalar tails).
  for (int64_t cols : {256, 300}) {
    // Row r, column c holds code (r + 7c) mod rows: each column has every code once, and a
    // kernel that reads a column's neighbour gets another code.
    auto code_at = [&](int64_t r, int64_t c) { return codes[size_t((r + 7 * c) % rows)]; };
    std::vector<uint8_t> data(size_t(rows * cols));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) data[size_t(r * cols + c)] = code_at(r, c);
    const int64_t sr = (rows + 127) / 128, sc = (cols + 127) / 128;
    std::vector<float> scales(size_t(sr * sc));
    for (size_t i = 0; i < scales.size(); ++i) scales[i] = std::ldexp(1.0f + float(i) / 8.0f, -int(i) - 3);
    Weight w{.name = "codes", .dtype = DType::F8_E4M3, .rows = rows, .cols = cols, .data = data.data(),
             .scale_inv = scales.data()};
    for_each_target([&] {
      for (int64_t hot : {int64_t(0), int64_t(1), int64_t(2), int64_t(3), int64_t(130), cols - 10, cols - 1})
        for (float xv : {1.0f, -3.0f, std::ldexp(1.0f + 1.0f / 4096, -70), std::ldexp(-1.25f, 50)}) {
          // n tokens (the batched kernels too); token i's activation is xv * 2^i.
          for (int64_t n : {1, 2, 3, 4, 7}) {
            std::vector<float> x(size_t(n * cols), 0.0f), y(size_t(n * rows), NAN);
            for (int64_t i = 0; i < n; ++i) x[size_t(i * cols + hot)] = std::ldexp(xv, int(i));
            cpu::matvec_rows(w, 0, rows, x.data(), n, cols, y.data(), rows);
            for (int64_t i = 0; i < n; ++i)
              for (int64_t r = 0; r < rows; ++r) {
                const float want =
                    e4m3_to_f32(code_at(r, hot)) * scales[size_t((r / 128) * sc + hot / 128)] * std::ldexp(xv, int(i));
                ASSERT_EQ(y[size_t(i * rows + r)], want) << "code 0x" << std::hex << int(code_at(r, hot)) << std::dec
                                                         << " cols " << cols << " col " << hot << " x " << xv << " n "
                                                         << n << " token " << i;
              }
          }
        }
    });
  }
}

// dequant_rows turns every e4m3 code into e4m3_to_f32(code) · scale rounded once, for scales
// whose 2^120 multiple is finite (the conversion-free route), scales where it is not (2^8 and
// up: the F16C route) and scales that make products subnormal in f32.
TEST(CpuKernels, DequantEveryE4m3CodeIsExact) {
  const int64_t rows = 256, cols = 300, sc = 3;
  std::vector<uint8_t> data(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) data[size_t(r * cols + c)] = uint8_t((r + c) & 0xff);
  for (float big : {0.1f, 300.0f, std::ldexp(1.0f, 100)}) {
    const std::vector<float> scales = {1.5f, std::ldexp(1.0f, -140), big, std::ldexp(3.0f, -9), 7.0f, big};
    Weight w{.name = "codes", .dtype = DType::F8_E4M3, .rows = rows, .cols = cols, .data = data.data(),
             .scale_inv = scales.data()};
    for_each_target([&] {
      std::vector<float> got(size_t(rows * cols));
      cpu::dequant_rows(w, 0, rows, got.data(), cols);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) {
          const uint8_t code = data[size_t(r * cols + c)];
          if ((code & 0x7f) == 0x7f) continue;  // NaN
          const float want = e4m3_to_f32(code) * scales[size_t((r / 128) * sc + c / 128)];
          ASSERT_EQ(got[size_t(r * cols + c)], want) << "code 0x" << std::hex << int(code) << std::dec << " at " << r
                                                     << "," << c << " scale big " << big;
        }
    });
  }
}

// Rows wider than the FP8 decode kernel's activation segment (8192 / tokens columns) or the
// 16-bit one-token kernel's column segment (4096) are summed in pieces.
TEST(CpuKernels, MatvecWideRows) {
  for_each_target([] {
    for (DType dt : kDtypes)
      for (int64_t cols : {2700, 4096 + 100, 8192, 8200, 16384 + 300})
        for (int64_t n : {1, 3, 4})
          for (int64_t rows : {3, 37}) {  // 37: blocks of rows per segment and a partial block
            auto w = random_weight(dt, rows, cols, uint32_t(cols));
            auto x = random_vector(n * cols, 17, 4.0f);
            ASSERT_NO_FATAL_FAILURE(expect_matvec_matches(
                w->w, 0, rows, x, n, cols, rows,
                std::string(dtype_name(dt)) + " " + std::to_string(rows) + "x" + std::to_string(cols) +
                    " n=" + std::to_string(n)));
          }
  });
}

// Weight rows start wherever the checkpoint put them (safetensors tensors sit at any byte offset
// from a cache line; test weights in std::vector storage sit 16 bytes off), and the decode kernel
// reads rows at a nonzero even offset from aligned lines (dot_order-inl.h's RealignedGroups).
// Copies of a weight at every offset within a cache line give the bits of the 64-byte-aligned
// copy, on every target; the copies end against a page that cannot be read (the kernel must not
// read past the line of a row's last byte), and start right after one.
TEST(CpuKernels, MatvecRowsGivesTheSameBitsAtEveryOffsetFromACacheLine) {
  const long page = sysconf(_SC_PAGESIZE);
  for (DType dt : {DType::F8_E4M3, DType::BF16, DType::F16, DType::F32})
    // 2048 columns: whole 128-column blocks (row bytes a multiple of 64, so every row has the
    // tensor's offset); 300: a partial block and a tail, rows at offsets that change row to row.
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{5, 2048}, {130, 300}, {3, 4096 + 100}}) {
      auto w = random_weight(dt, rows, cols, uint32_t(cols + rows));
      const size_t bytes = w->bytes.size(), esize = size_t(dtype_size(dt));
      const size_t span = (bytes + 64 + size_t(page) - 1) / size_t(page) * size_t(page);
      // [unreadable page][span bytes][unreadable page]
      auto* m = static_cast<uint8_t*>(
          mmap(nullptr, span + 2 * size_t(page), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
      ASSERT_NE(m, MAP_FAILED);
      ASSERT_EQ(mprotect(m, size_t(page), PROT_NONE), 0);
      ASSERT_EQ(mprotect(m + size_t(page) + span, size_t(page), PROT_NONE), 0);
      uint8_t* first = m + page;
      uint8_t* end = first + span;
      for (int64_t n : {1, 2, 4, 5}) {
        auto x = random_vector(n * cols, uint32_t(n + 40));
        std::vector<float> want(size_t(n * rows)), got(size_t(n * rows));
        for_each_target([&] {
          Weight at = w->w;
          std::memcpy(first, w->bytes.data(), bytes);
          at.data = first;
          cpu::matvec_rows(at, 0, rows, x.data(), n, cols, want.data(), rows);
          ASSERT_NO_FATAL_FAILURE(expect_matvec_matches(at, 0, rows, x, n, cols, rows, std::string(dtype_name(dt))));
          for (size_t off = esize; off < 64; off += esize)
            for (uint8_t* start : {first + off, end - bytes - (64 - off)}) {
              if (start + bytes > end) continue;
              std::memcpy(start, w->bytes.data(), bytes);
              at.data = start;
              std::fill(got.begin(), got.end(), NAN);
              cpu::matvec_rows(at, 0, rows, x.data(), n, cols, got.data(), rows);
              for (size_t i = 0; i < got.size(); ++i)
                ASSERT_EQ(f32_to_bits(got[i]), f32_to_bits(want[i]))
                    << dtype_name(dt) << " " << rows << "x" << cols << " n " << n << " at offset "
                    << (reinterpret_cast<uintptr_t>(start) & 63) << " output " << i;
            }
          // Ending exactly at the unreadable page (the last row's line is the page's last).
          uint8_t* last = end - bytes;
          std::memcpy(last, w->bytes.data(), bytes);
          at.data = last;
          cpu::matvec_rows(at, 0, rows, x.data(), n, cols, got.data(), rows);
          for (size_t i = 0; i < got.size(); ++i)
            ASSERT_EQ(f32_to_bits(got[i]), f32_to_bits(want[i])) << dtype_name(dt) << " ending at a page, output " << i;
        });
      }
      munmap(m, span + 2 * size_t(page));
    }
}

TEST(CpuKernels, MatvecTRowsMatchesReference) {
  for_each_target([] {
    for (DType dt : kDtypes)
      for (auto [rows, cols] : kShapes) {
        auto w = random_weight(dt, rows, cols, uint32_t(rows * 3 + cols));
        const int64_t r0 = rows / 4, r1 = rows - rows / 5;
        auto q = random_vector(r1 - r0, 5);
        std::vector<float> out(static_cast<size_t>(cols), NAN), row(static_cast<size_t>(cols));
        std::vector<double> want(static_cast<size_t>(cols), 0.0), abs_sum(static_cast<size_t>(cols), 0.0);
        cpu::matvec_t_rows(w->w, r0, r1, q.data(), out.data());
        for (int64_t r = r0; r < r1; ++r) {
          ref::dequant_row(w->w, r, row.data());
          for (int64_t c = 0; c < cols; ++c) {
            want[size_t(c)] += double(q[size_t(r - r0)]) * row[size_t(c)];
            abs_sum[size_t(c)] += std::fabs(double(q[size_t(r - r0)]) * row[size_t(c)]);
          }
        }
        for (int64_t c = 0; c < cols; ++c)
          ASSERT_NEAR(out[size_t(c)], want[size_t(c)], bound(r1 - r0 + 1, abs_sum[size_t(c)]))
              << dtype_name(dt) << " " << rows << "x" << cols << " c=" << c;
      }
  });
}

TEST(CpuKernels, SumF32) {
  for_each_target([] {
    for (int64_t n : {0, 1, 7, 63, 64, 65, 1000}) {
      auto v = random_vector(n, 9);
      const auto d = double_sum(n, [&](int64_t k) { return double(v[size_t(k)]); });
      EXPECT_NEAR(cpu::sum_f32(v.data(), n), d.sum, bound(n, d.abs_sum)) << n;
    }
  });
}

TEST(CpuKernels, TargetNameIsKnown) { EXPECT_STRNE(cpu::target_name(), ""); }

}  // namespace
}  // namespace dsv3
