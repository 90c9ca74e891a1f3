#pragma once
// bfloat16 <-> f32 (docs/numerics.md §6): round to nearest even on the upper 16 bits; NaN stays a quiet NaN.
#include "engine/numerics/hd.h"

namespace qtune::numerics {

QTUNE_HD uint16_t f32_to_bf16_bits(float f) {
  uint32_t u = bits_of(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  u += 0x7fffu + ((u >> 16) & 1u);  // carries into the exponent when rounding up, which is correct
  return static_cast<uint16_t>(u >> 16);
}

QTUNE_HD float bf16_bits_to_f32(uint16_t h) { return float_of(static_cast<uint32_t>(h) << 16); }

QTUNE_HD float round_to_bf16(float f) { return bf16_bits_to_f32(f32_to_bf16_bits(f)); }

}  // namespace qtune::numerics
