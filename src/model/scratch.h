// Step scratch buffers that grow to the largest batch seen and are then reused, so that a
// steady decode loop does not allocate.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace dsv3 {

template <typename T>
T* grow(std::vector<T>& v, int64_t n) {
  if (v.size() < size_t(n)) v.resize(size_t(n));
  return v.data();
}

}  // namespace dsv3
