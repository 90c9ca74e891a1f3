#pragma once
// The largest element of a row, in the accumulation type, for the softmax-like kernels (cross-entropy,
// softmax, attention's online softmax). 16 running maxima, so that the loop is one vector compare per 16
// elements; a maximum is exact, so the grouping changes nothing (but the sign of a zero maximum). NaNs are
// skipped: a row of NaNs only, of -inf only, or an empty row gives -inf, and each caller says what follows
// (cross-entropy and softmax sum exp(x - max) over the whole row, so a NaN shows in their results again).
#include <cstdint>
#include <limits>

#include "cpu/kernel_util.h"

namespace qtune::cpu {

template <class T>
acc_t<T> row_max(const T* x, int64_t n) {
  using A = acc_t<T>;
  constexpr int kLanes = 16;
  A part[kLanes];
  for (A& p : part) p = -std::numeric_limits<A>::infinity();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) {
      const A v = load(x + i + k);
      part[k] = v > part[k] ? v : part[k];
    }
  for (; i < n; ++i) part[0] = load(x + i) > part[0] ? load(x + i) : part[0];
  A mx = part[0];
  for (int k = 1; k < kLanes; ++k) mx = part[k] > mx ? part[k] : mx;
  return mx;
}

}  // namespace qtune::cpu
