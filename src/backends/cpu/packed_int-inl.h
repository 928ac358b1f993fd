// Decoding of compressed-tensors packed integer weights (weights/packed_int.h) into f32, exactly:
// code times the BF16 scale of its group, one product that f32 holds without rounding (a 4- or
// 8-bit integer times an 8-bit significand). The linear kernels sum these values in the F32
// layout's order of dot_order-inl.h (kernels.cpp decodes 4-bit rows straight into the layout's
// vectors and other rows into a stack buffer, the GEMM a row into its tile), so a packed weight
// gives the bits of its dequantised f32 copy on every path.
//
// Included once per Highway target by kernels.cpp and gemm.cpp (the usual -inl.h toggle).
#if defined(DSV3_BACKENDS_CPU_PACKED_INT_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef DSV3_BACKENDS_CPU_PACKED_INT_INL_H_
#undef DSV3_BACKENDS_CPU_PACKED_INT_INL_H_
#else
#define DSV3_BACKENDS_CPU_PACKED_INT_INL_H_
#endif

#include <algorithm>
#include <cstring>

#include "hwy/highway.h"
#include "weights/packed_int.h"
#include "weights/weight.h"

HWY_BEFORE_NAMESPACE();
namespace dsv3::cpu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// ---- 4-bit codes decoded straight into registers, for the matvec kernels ----
//
// A group of kC·N columns (kC·N/2 bytes of one scale group) becomes the kC vectors of
// dot_order-inl.h's F32Layout: v[q] lane l = column q·N + l, each value the exact product
// float(code) · scale that DecodePackedCols computes. Column k sits in byte k / 2 (low nibble
// first), i.e. at bits 4(k mod 8) of little-endian 32-bit word k / 8 of the row.
//
// AVX-512 (N = 16): the 16 products of a scale group are a vector (Int4Values), and a lane's code
// picks its value with one vpermps, which reads only the low 4 bits of each index lane. v[q]'s 16
// codes are the 64-bit word at byte 8q of the group, broadcast to every 64-bit lane; lane k rotated
// right by 8k - 28 (mod 64) holds code 2k + 1 at bits 0..3 of its upper half and code 2k at bits
// 28..31 of its lower half, which a shift right by 28 brings down: a load, two shifts and a permute
// per 16 weights, no masking and no int -> float conversion (picking the 32-bit words with vpermd
// instead: ~5% slower here; with two 32-bit broadcasts, the second masked: ~10%). Elsewhere the
// code is shifted out of its word broadcast to every lane, masked, offset by -8 and converted, then
// times the scale (16 registers: no room for two table halves beside four tokens' accumulators).
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
// Lane k: float(k - 8) · scale, the value of a stored nibble k (weights/packed_int.h).
HWY_INLINE hn::Vec<hn::ScalableTag<float>> Int4Values(hn::ScalableTag<float> df, float scale) {
  return hn::Mul(hn::Iota(df, -8.0f), hn::Set(df, scale));
}

// Columns c .. c + 16·kC of a packed row (c a multiple of 16: words c / 8 .. c / 8 + 2kC - 1),
// values[q] from Int4Values of v[q]'s group.
template <int kC>
HWY_INLINE void LoadInt4(hn::ScalableTag<float>, const int32_t* row, int64_t c,
                         const hn::Vec<hn::ScalableTag<float>>* values, hn::Vec<hn::ScalableTag<float>>* v) {
  const int32_t* p = row + c / 8;
  const __m512i rot = _mm512_setr_epi64(36, 44, 52, 60, 4, 12, 20, 28);
  const __m512i shifts = _mm512_setr_epi32(28, 0, 28, 0, 28, 0, 28, 0, 28, 0, 28, 0, 28, 0, 28, 0);
  for (int q = 0; q < kC; ++q) {
    long long w;
    std::memcpy(&w, p + 2 * q, 8);
    const __m512i r = _mm512_rorv_epi64(_mm512_set1_epi64(w), rot);
    v[q].raw = _mm512_permutexvar_ps(_mm512_srlv_epi32(r, shifts), values[q].raw);
  }
}
#else
// The scale, broadcast (LoadInt4 multiplies v[q] by its group's).
HWY_INLINE hn::Vec<hn::ScalableTag<float>> Int4Values(hn::ScalableTag<float> df, float scale) {
  return hn::Set(df, scale);
}

// Columns c .. c + kC·N of a packed row (c a multiple of kC·N; N <= 8, so a vector's codes lie in
// one 32-bit word of the row).
template <int kC>
HWY_INLINE void LoadInt4(hn::ScalableTag<float> df, const int32_t* row, int64_t c,
                         const hn::Vec<hn::ScalableTag<float>>* scale, hn::Vec<hn::ScalableTag<float>>* v) {
  const hn::RebindToUnsigned<decltype(df)> du;
  const hn::RebindToSigned<decltype(df)> di;
  constexpr int64_t N = int64_t(hn::MaxLanes(df));
  static_assert(N <= 8);
  for (int q = 0; q < kC; ++q) {
    const int64_t k = c + q * N;                           // first column of v[q]
    const uint32_t first = N == 8 ? 0 : uint32_t(k % 8);  // N = 8: k is a multiple of 8
    const auto shifts = hn::ShiftLeft<2>(hn::Iota(du, first));
    const auto codes = hn::And(hn::operator>>(hn::Set(du, uint32_t(row[k / 8])), shifts), hn::Set(du, 15u));
    v[q] = hn::Mul(hn::ConvertTo(df, hn::Sub(hn::BitCast(di, codes), hn::Set(di, 8))), scale[q]);
  }
}
#endif

// Calls f(c, v) for c = c0, c0 + kC·N, ... below c1 (c0 a multiple of kC·N, c1 - c0 of kC·N) with
// v[0 .. kC) = columns c .. c + kC·N of 4-bit packed row `row` (scales srow, group size gs, a
// multiple of N: a vector never straddles two groups). The scales of 2048 columns are converted to
// f32 first and the group is counted along: a value vector then costs a broadcast from memory and
// a multiply (with each BF16 scale converted and broadcast from a register in the loop, group size
// 32 decoded ~25% slower than group size 2048 here; an idiv per group had cost more than the decode).
template <int kC, class F>
HWY_INLINE void ForInt4Columns(hn::ScalableTag<float> df, const int32_t* row, const uint16_t* srow, int64_t gs,
                               int64_t c0, int64_t c1, F&& f) {
  using VF = hn::Vec<hn::ScalableTag<float>>;
  constexpr int64_t kChunk = 2048, kMaxN = int64_t(hn::MaxLanes(hn::ScalableTag<float>()));
  static_assert(kChunk % (kC * kMaxN) == 0);
  const int64_t N = int64_t(hn::Lanes(df));
  alignas(64) float scale[kChunk / kMaxN + 1];  // groups gs >= N: at most this many start in a chunk
  for (int64_t a = c0; a < c1; a += kChunk) {
    const int64_t b = std::min(c1, a + kChunk), g0 = a / gs, n_groups = (b - 1) / gs - g0 + 1;
    for (int64_t i = 0; i < n_groups; ++i) scale[i] = bf16_to_f32(srow[g0 + i]);
    int64_t g = 0, g_end = (g0 + 1) * gs;  // the current group (from g0), and its end
    VF values = Int4Values(df, scale[0]);
    for (int64_t c = a; c < b; c += kC * N) {
      VF vq[kC], v[kC];
      for (int q = 0; q < kC; ++q) {
        if (c + q * N >= g_end) {
          ++g, g_end += gs;
          values = Int4Values(df, scale[g]);
        }
        vq[q] = values;
      }
      LoadInt4<kC>(df, row, c, vq, v);
      f(c, v);
    }
  }
}

// out[0 .. c1 - c0) = W[r, c0 .. c1) of a packed weight, as f32. c0 must be a multiple of 2048
// (a segment start) or 0, so that vector chunks never straddle a group where the group size is
// a multiple of the chunk.
HWY_INLINE void DecodePackedCols(const Weight& w, int64_t r, int64_t c0, int64_t c1, float* out) {
  using DFl = hn::ScalableTag<float>;
  const DFl df;
  const hn::RebindToSigned<DFl> di;
  const hn::RebindToUnsigned<DFl> du;
  const hn::Rebind<uint8_t, DFl> d8;
  const int64_t N = int64_t(hn::Lanes(df)), gs = w.group_size;
  const auto* row = static_cast<const int32_t*>(w.data) + r * w.packed_cols();
  const auto* bytes = reinterpret_cast<const uint8_t*>(row);
  const uint16_t* srow = w.weight_scale + r * w.n_groups();
  int64_t c = c0;
  if (w.bits == 4 && gs % N == 0 && c0 % (2 * N) == 0) {
    const int64_t end = c0 + (c1 - c0) / (2 * N) * (2 * N);
    ForInt4Columns<2>(df, row, srow, gs, c0, end, [&](int64_t cv, const hn::Vec<DFl>* v) {
      hn::StoreU(v[0], df, out + (cv - c0));
      hn::StoreU(v[1], df, out + (cv - c0) + N);
    });
    c = end;
  } else if (w.bits == 8 && gs % N == 0 && c0 % N == 0) {
    const auto offset = hn::Set(di, 128);
    for (; c + N <= c1; c += N) {
      const auto vs = hn::Set(df, bf16_to_f32(srow[c / gs]));
      const auto v = hn::BitCast(di, hn::PromoteTo(du, hn::LoadU(d8, bytes + c)));
      hn::StoreU(hn::Mul(hn::ConvertTo(df, hn::Sub(v, offset)), vs), df, out + (c - c0));
    }
  }
  for (; c < c1; ++c) out[c - c0] = float(packed_code(row, w.bits, c)) * bf16_to_f32(srow[c / gs]);
}

}  // namespace HWY_NAMESPACE
}  // namespace dsv3::cpu
HWY_AFTER_NAMESPACE();

#endif  // DSV3_BACKENDS_CPU_PACKED_INT_INL_H_
