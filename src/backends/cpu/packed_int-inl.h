// Decoding of compressed-tensors packed integer weights (weights/packed_int.h) into f32, exactly:
// code times the BF16 scale of its group, one product that f32 holds without rounding (a 4- or
// 8-bit integer times an 8-bit significand). The linear kernels sum these values in the F32
// layout's order of dot_order-inl.h (kernels.cpp decodes a row segment into a stack buffer, the
// GEMM a row into its tile), so a packed weight gives the bits of its dequantised f32 copy on
// every path.
//
// 4 bits: a byte holds columns 2j (low nibble) and 2j + 1 (high nibble); N bytes widened to 32-bit
// lanes give both as integer vectors, and StoreInterleaved2 writes them back in column order.
//
// Included once per Highway target by kernels.cpp and gemm.cpp (the usual -inl.h toggle).
#if defined(DSV3_BACKENDS_CPU_PACKED_INT_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef DSV3_BACKENDS_CPU_PACKED_INT_INL_H_
#undef DSV3_BACKENDS_CPU_PACKED_INT_INL_H_
#else
#define DSV3_BACKENDS_CPU_PACKED_INT_INL_H_
#endif

#include "hwy/highway.h"
#include "weights/packed_int.h"
#include "weights/weight.h"

HWY_BEFORE_NAMESPACE();
namespace dsv3::cpu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

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
  if (w.bits == 4 && gs % (2 * N) == 0 && c0 % (2 * N) == 0) {
    const auto mask = hn::Set(di, 15), offset = hn::Set(di, 8);
    for (; c + 2 * N <= c1; c += 2 * N) {
      const auto vs = hn::Set(df, bf16_to_f32(srow[c / gs]));
      const auto v = hn::BitCast(di, hn::PromoteTo(du, hn::LoadU(d8, bytes + c / 2)));
      const auto lo = hn::Mul(hn::ConvertTo(df, hn::Sub(hn::And(v, mask), offset)), vs);
      const auto hi = hn::Mul(hn::ConvertTo(df, hn::Sub(hn::ShiftRight<4>(v), offset)), vs);
      hn::StoreInterleaved2(lo, hi, df, out + (c - c0));
    }
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
