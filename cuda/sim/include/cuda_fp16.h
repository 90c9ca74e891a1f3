#pragma once
// The half type of the simulated runtime: bits and round-to-nearest-even conversions, through the same
// scalar numerics the CPU backend uses (engine/numerics/f16.h).
#include <cstdint>

#include "engine/numerics/f16.h"

struct __half {
  uint16_t bits;
};

inline __half __float2half(float f) { return {qtune::numerics::f32_to_f16_bits(f)}; }
inline __half __float2half_rn(float f) { return __float2half(f); }
inline float __half2float(__half h) { return qtune::numerics::f16_bits_to_f32(h.bits); }
inline __half __ushort_as_half(unsigned short bits) { return {bits}; }
