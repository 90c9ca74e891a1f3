#pragma once
// The dynamic float8 scale of docs/numerics.md §3, shared by the CPU and CUDA kernels so both compute the
// same bits.
#include <cmath>

#include "engine/numerics/hd.h"

namespace qtune::numerics {

// scale = f32(fp8_max / max(amax, 1e-12)) with the division in f64 (torchao's amax_to_scale); with
// pow2 it is rounded down to 2^floor(log2(scale)). frexp gives that power exactly, where a rounded
// log2 could land on the next integer for a scale just below a power of two.
QTUNE_HD float fp8_scale_of(double amax, double fp8_max, bool pow2) {
  const float scale = static_cast<float>(fp8_max / (amax > 1e-12 ? amax : 1e-12));
  if (!pow2 || !(scale > 0.0f) || std::isinf(scale)) return scale;
  int e;
  (void)std::frexp(scale, &e);  // scale = m * 2^e, m in [0.5, 1)
  return std::ldexp(1.0f, e - 1);
}

}  // namespace qtune::numerics
