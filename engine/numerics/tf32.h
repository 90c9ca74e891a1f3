#pragma once
// TF32, the input format of tensor-core f32 GEMMs (docs/numerics.md §6): f32 with its mantissa cut to 10
// bits, rounded to nearest with ties away from zero, as PTX's cvt.rna.tf32.f32 does.
#include "engine/numerics/hd.h"

namespace qtune::numerics {

QTUNE_HD float round_to_tf32(float x) {
  const uint32_t u = bits_of(x);
  if ((u & 0x7f800000u) == 0x7f800000u) return x;  // inf and NaN pass through
  // Adding half of the 13 dropped bits' range rounds the magnitude half-up (a carry into the exponent is
  // right, and gives inf past the largest TF32).
  return float_of((u + 0x1000u) & 0xffffe000u);
}

}  // namespace qtune::numerics
