#pragma once
// IEEE binary16 <-> f32 (docs/numerics.md §6): round to nearest even, with subnormals; overflow gives inf.
#include "engine/numerics/hd.h"

namespace qtune::numerics {

QTUNE_HD uint16_t f32_to_f16_bits(float f) {
  const uint32_t x = bits_of(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
  if (ax >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520 rounds past 65504
  if (ax >= 0x38800000u) {                                              // normal in f16 (>= 2^-14)
    const uint32_t rounded = ax + 0xfffu + ((ax >> 13) & 1u);
    return static_cast<uint16_t>(sign | ((rounded - 0x38000000u) >> 13));
  }
  // Subnormal: ulp(0.5f) is 2^-24, the f16 subnormal step, so one f32 add rounds exactly (RNE).
  const float shifted = float_of(ax) + 0.5f;
  return static_cast<uint16_t>(sign | (bits_of(shifted) - 0x3f000000u));
}

QTUNE_HD float f16_bits_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return float_of(sign | 0x7f800000u | (mant << 13));
  if (exp != 0) return float_of(sign | ((exp + 112u) << 23) | (mant << 13));
  // Subnormal or zero: mant * 2^-24 is exact in f32.
  const float magnitude = static_cast<float>(mant) * 5.9604644775390625e-08f;
  return float_of(sign | bits_of(magnitude));
}

QTUNE_HD float round_to_f16(float f) { return f16_bits_to_f32(f32_to_f16_bits(f)); }

}  // namespace qtune::numerics
