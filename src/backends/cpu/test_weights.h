// Random weights in every stored format, owning their bytes, and a loop over the Highway targets,
// for the CPU backend's tests.
#pragma once

#include <gtest/gtest.h>
#include <hwy/targets.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "base/dtype.h"
#include "weights/fp8_block.h"
#include "weights/weight.h"

namespace dsv3::testing {

// Runs body once per compiled-and-supported target, with the dispatcher pinned to it.
template <typename F>
void for_each_target(F body) {
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    SCOPED_TRACE(hwy::TargetName(target));
    body();
  }
  hwy::SetSupportedTargetsForTest(0);
}

// Σ term(k) for k < K in double, and Σ |term(k)|: the reference for a kernel's f32 sum, whose
// accumulation error the tests bound by a multiple of K · 2^-24 · abs_sum.
struct DoubleSum {
  double sum = 0, abs_sum = 0;
};
template <typename F>
DoubleSum double_sum(int64_t K, F term) {
  DoubleSum d;
  for (int64_t k = 0; k < K; ++k) {
    const double v = term(k);
    d.sum += v;
    d.abs_sum += std::fabs(v);
  }
  return d;
}

struct OwnedWeight {
  Weight w;
  std::vector<uint8_t> bytes;
  std::vector<float> scales;
};

// A rows x cols weight of `dtype` with values ~ U(-amp, amp); FP8 gets 128x128 block scales that
// vary across blocks (so a wrong block index shows).
inline std::unique_ptr<OwnedWeight> random_weight(DType dtype, int64_t rows, int64_t cols, uint32_t seed,
                                                  float amp = 0.5f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-amp, amp);
  std::vector<float> v(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      v[size_t(r * cols + c)] = u(rng) * float(1 + ((r / 128) * 3 + (c / 128)) % 5);
  auto o = std::make_unique<OwnedWeight>();
  o->w.name = "test";
  o->w.dtype = dtype;
  o->w.rows = rows;
  o->w.cols = cols;
  const size_t n = v.size();
  switch (dtype) {
    case DType::F8_E4M3: {
      Fp8Block q = quantize_fp8_blocks(v, rows, cols);
      o->bytes = std::move(q.codes);
      o->scales = std::move(q.scale_inv);
      break;
    }
    case DType::BF16:
    case DType::F16: {
      o->bytes.resize(n * 2);
      auto* p = reinterpret_cast<uint16_t*>(o->bytes.data());
      for (size_t i = 0; i < n; ++i) {
        if (dtype == DType::BF16) {
          p[i] = f32_to_bf16(v[i]);
        } else {
          // f16 by way of a value f16 represents exactly: round through bf16 (8 significant bits).
          const float f = bf16_to_f32(f32_to_bf16(v[i]));
          uint32_t b = f32_to_bits(f);
          const uint32_t sign = (b >> 16) & 0x8000u;
          const int exp = int((b >> 23) & 0xff) - 127 + 15;
          const uint32_t man = (b >> 13) & 0x3ffu;
          p[i] = f == 0.0f || exp <= 0 ? uint16_t(sign) : uint16_t(sign | (uint32_t(exp) << 10) | man);
        }
      }
      break;
    }
    default: {
      o->bytes.resize(n * 4);
      std::memcpy(o->bytes.data(), v.data(), n * 4);
    }
  }
  o->w.data = o->bytes.data();
  o->w.scale_inv = o->scales.empty() ? nullptr : o->scales.data();
  return o;
}

struct OwnedPackedWeight {
  Weight w;
  std::vector<int32_t> packed;
  std::vector<uint16_t> scale;
};

// A rows x cols compressed-tensors packed weight (weights/packed_int.h) of `bits`-bit codes, every
// code equally likely, with BF16 scales per group of `group_size` columns (the last group may be
// partial) spread over a few binades (so a wrong group index shows).
inline std::unique_ptr<OwnedPackedWeight> random_packed_weight(int bits, int64_t rows, int64_t cols,
                                                               int64_t group_size, uint32_t seed) {
  std::mt19937 rng(seed);
  auto o = std::make_unique<OwnedPackedWeight>();
  Weight& w = o->w;
  w.name = "test";
  w.dtype = DType::I32;
  w.rows = rows, w.cols = cols, w.bits = bits, w.group_size = group_size;
  o->packed.assign(size_t(rows * w.packed_cols()), 0);
  std::uniform_int_distribution<uint32_t> code(0, (1u << bits) - 1);
  const int per_word = 32 / bits;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      o->packed[size_t(r * w.packed_cols() + c / per_word)] |= int32_t(code(rng) << ((c % per_word) * bits));
  std::uniform_real_distribution<float> u(0.5f, 1.0f);
  o->scale.resize(size_t(rows * w.n_groups()));
  for (size_t i = 0; i < o->scale.size(); ++i) o->scale[i] = f32_to_bf16(std::ldexp(u(rng), -int(i % 7) - 4));
  w.data = o->packed.data();
  w.weight_scale = o->scale.data();
  return o;
}

inline std::vector<float> random_vector(int64_t n, uint32_t seed, float amp = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-amp, amp);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = u(rng);
  return v;
}

}  // namespace dsv3::testing
