#pragma once
// exp for the f32 paths of the CPU kernels, branch-free so that the loops calling it vectorize (std::exp
// is an opaque libm call per element: in a softmax over a 32000-word vocabulary it was most of the
// time). x = n ln2 + r with |r| <= ln2/2 (Cody-Waite, two-part ln2), e^r by its degree-6 Taylor
// polynomial (remainder below 2e-8 there), times 2^n built in the exponent bits (as two factors, so
// that each stays a normal float at both ends of the range). Within 3 ulp of
// std::exp over the normal range; exp(-inf) and anything below the smallest normal result give exactly
// 0, above ln(FLT_MAX) +inf, NaN stays NaN. f64 keeps std::exp: the gradient checks run in f64.
#include <bit>
#include <cmath>
#include <cstdint>

namespace qtune::cpu {

inline float vec_exp(float x) {
  constexpr float kLog2e = 1.44269504088896341f, kLn2Hi = 0.693145751953125f, kLn2Lo = 1.428606765330187e-06f;
  constexpr float kMin = -87.33654f, kMax = 88.72283f;  // ln of the smallest normal and of FLT_MAX
  constexpr float kRound = 12582912.0f;                 // 1.5 * 2^23: adding it rounds to an integer
  const float xc = x < kMin ? kMin : (x > kMax ? kMax : x);
  const float n = (xc * kLog2e + kRound) - kRound;
  const float r = (xc - n * kLn2Hi) - n * kLn2Lo;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t n1 = static_cast<int32_t>(n) >> 1, n2 = static_cast<int32_t>(n) - n1;  // n in [-126, 128]
  const float y = p * std::bit_cast<float>(static_cast<uint32_t>(n1 + 127) << 23) *
                  std::bit_cast<float>(static_cast<uint32_t>(n2 + 127) << 23);
  const float saturated = x < kMin ? 0.0f : (x > kMax ? INFINITY : y);
  return x != x ? x : saturated;
}

inline double vec_exp(double x) { return std::exp(x); }

}  // namespace qtune::cpu
