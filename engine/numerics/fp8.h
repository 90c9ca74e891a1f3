#pragma once
// float8 formats (docs/numerics.md §3). e4m3 is the "fn" variant: no infinities, max 448, NaN = S.1111.111.
// e5m2 is IEEE-like with max 57344. Casting to fp8 rounds to nearest even after clamping to +-max, so
// infinities saturate; NaN stays NaN.
#include <cmath>

#include "engine/numerics/hd.h"

namespace qtune::numerics {

struct E4M3 {
  static constexpr int exp_bits = 4, mant_bits = 3, bias = 7;
  static constexpr double max = 448.0;
  static constexpr uint8_t nan_code = 0x7f;
};

struct E5M2 {
  static constexpr int exp_bits = 5, mant_bits = 2, bias = 15;
  static constexpr double max = 57344.0;
  static constexpr uint8_t nan_code = 0x7f;  // exponent all ones, mantissa 11: a quiet NaN
};

// Encodes a finite-or-not value of any binary float type F (float or double). Every step but the
// single rint() is exact arithmetic on powers of two, so the result is one correct rounding of x.
template <class Fmt, class F>
QTUNE_HD uint8_t encode_fp8(F x) {
  if (x != x) return Fmt::nan_code;
  const uint8_t sign = std::signbit(x) ? 0x80 : 0x00;
  F ax = std::fabs(x);
  if (ax > static_cast<F>(Fmt::max)) ax = static_cast<F>(Fmt::max);
  constexpr int min_exp = 1 - Fmt::bias;  // exponent of the smallest normal
  constexpr int one = 1 << Fmt::mant_bits;
  if (ax < std::ldexp(F(1), min_exp)) {
    // Subnormal steps are 2^(min_exp - mant_bits); a result of `one` is the smallest normal code.
    const int q = static_cast<int>(std::rint(std::ldexp(ax, Fmt::mant_bits - min_exp)));
    return static_cast<uint8_t>(sign | q);
  }
  int e;
  (void)std::frexp(ax, &e);                                                 // ax = m * 2^e with m in [0.5, 1)
  e -= 1;                                                                   // now ax in [2^e, 2^(e+1))
  int q = static_cast<int>(std::rint(std::ldexp(ax, Fmt::mant_bits - e)));  // in [one, 2*one]
  if (q == 2 * one) {
    q = one;
    e += 1;
  }
  return static_cast<uint8_t>(sign | ((e + Fmt::bias) << Fmt::mant_bits) | (q - one));
}

template <class Fmt>
QTUNE_HD float decode_fp8(uint8_t code) {
  const float sign = (code & 0x80) ? -1.0f : 1.0f;
  const int exp = (code >> Fmt::mant_bits) & ((1 << Fmt::exp_bits) - 1);
  const int mant = code & ((1 << Fmt::mant_bits) - 1);
  constexpr int max_exp = (1 << Fmt::exp_bits) - 1;
  if constexpr (Fmt::exp_bits == 4) {
    if (exp == max_exp && mant == 7) return sign * NAN;
  } else {
    if (exp == max_exp) return mant == 0 ? sign * INFINITY : sign * NAN;
  }
  if (exp == 0) return sign * std::ldexp(static_cast<float>(mant), 1 - Fmt::bias - Fmt::mant_bits);
  return sign * std::ldexp(static_cast<float>(mant + (1 << Fmt::mant_bits)), exp - Fmt::bias - Fmt::mant_bits);
}

QTUNE_HD uint8_t f32_to_e4m3(float x) { return encode_fp8<E4M3>(x); }
QTUNE_HD uint8_t f32_to_e5m2(float x) { return encode_fp8<E5M2>(x); }
QTUNE_HD float e4m3_to_f32(uint8_t c) { return decode_fp8<E4M3>(c); }
QTUNE_HD float e5m2_to_f32(uint8_t c) { return decode_fp8<E5M2>(c); }

// The value a code stands for under a multiplier scale (code = x * scale): one f32 division, as the CPU's
// emulated fp8 GEMM dequantizes its operands.
QTUNE_HD float fp8_dequantize(uint8_t code, bool e4m3, float scale) {
  return (e4m3 ? e4m3_to_f32(code) : e5m2_to_f32(code)) / scale;
}

}  // namespace qtune::numerics
