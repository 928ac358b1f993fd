// Fold(d, v): the sum of a vector's lanes as its halves fold (lane l + lane l + N/2, then again
// on the half), a fixed order on every target. The decode kernels' step 5 (dot_order-inl.h) and
// the attention scores (attend_kernels.cpp) sum in it, so a sum's bits do not depend on how it
// was computed. d: any Highway float tag; returns lane 0 of the last fold.
//
// Included once per Highway target (the usual -inl.h toggle).
#if defined(DSV3_BACKENDS_CPU_FOLD_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef DSV3_BACKENDS_CPU_FOLD_INL_H_
#undef DSV3_BACKENDS_CPU_FOLD_INL_H_
#else
#define DSV3_BACKENDS_CPU_FOLD_INL_H_
#endif

#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace dsv3::cpu {
namespace HWY_NAMESPACE {

template <class D>
HWY_INLINE float Fold(D d, hwy::HWY_NAMESPACE::Vec<D> v) {
  namespace hn = hwy::HWY_NAMESPACE;
#if HWY_TARGET == HWY_SCALAR
  return hn::GetLane(v);
#else
  if constexpr (hn::MaxLanes(D()) == 1) {
    return hn::GetLane(v);
  } else {
    const hn::Half<D> dh;
    return Fold(dh, hn::Add(hn::LowerHalf(dh, v), hn::UpperHalf(dh, v)));
  }
#endif
}

}  // namespace HWY_NAMESPACE
}  // namespace dsv3::cpu
HWY_AFTER_NAMESPACE();

#endif  // DSV3_BACKENDS_CPU_FOLD_INL_H_
