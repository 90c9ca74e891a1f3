#pragma once
// The bfloat16 type of the simulated runtime: bits and round-to-nearest-even conversions, through the
// same scalar numerics the CPU backend uses (engine/numerics/bf16.h).
#include <cstdint>

#include "engine/numerics/bf16.h"

struct __nv_bfloat16 {
  uint16_t bits;
};

inline __nv_bfloat16 __float2bfloat16(float f) { return {qtune::numerics::f32_to_bf16_bits(f)}; }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __float2bfloat16(f); }
inline float __bfloat162float(__nv_bfloat16 h) { return qtune::numerics::bf16_bits_to_f32(h.bits); }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short bits) { return {bits}; }
