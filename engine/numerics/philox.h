#pragma once
// Philox 4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3"). A counter-based
// generator: the value of element i of a stream depends only on (seed, offset, i), so CPU and CUDA
// kernels produce identical streams without sharing any state.
//
// Stream layout (the contract every backend follows):
//   uniform element i  = word (i % 4) of philox(counter = offset + i / 4, key = seed), its top
//                        24 bits (f32, f64), 11 bits (f16) or 8 bits (bf16) as a fraction in [0, 1)
//   normal  element i  = Box-Muller on words (2*(i%2), 2*(i%2)+1) of block offset + i / 2
// so a fill of n uniforms consumes ceil(n / 4) blocks and a fill of n normals ceil(n / 2).
#include <cmath>
#include <type_traits>

#include "engine/dtype.h"
#include "engine/numerics/hd.h"

namespace qtune::numerics {

struct Philox4 {
  uint32_t v[4];
};

QTUNE_HD void philox_mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

// The full Philox4x32-10 bijection: a 128-bit counter (words c0..c3) under a 64-bit key (k0, k1),
// as in Random123's philox4x32 (its known-answer vectors are checked in tests/test_rng.cpp).
QTUNE_HD Philox4 philox4x32_10(Philox4 counter, uint32_t k0, uint32_t k1) {
  uint32_t c0 = counter.v[0], c1 = counter.v[1], c2 = counter.v[2], c3 = counter.v[3];
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(0xD2511F53u, c0, hi0, lo0);
    philox_mulhilo(0xCD9E8D57u, c2, hi1, lo1);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0, c1 = n1, c2 = n2, c3 = n3;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return {{c0, c1, c2, c3}};
}

// The stream's block function: counter = (low word, high word, 0, 0) of `counter`,
// key = (low word, high word) of `seed`.
QTUNE_HD Philox4 philox4x32(uint64_t counter, uint64_t seed) {
  return philox4x32_10({{static_cast<uint32_t>(counter), static_cast<uint32_t>(counter >> 32), 0u, 0u}},
                       static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// [0, 1) with 24 random bits: exactly representable in f32.
QTUNE_HD float uniform_from_bits(uint32_t u) { return static_cast<float>(u >> 8) * 5.9604644775390625e-08f; }

// [0, 1) from the top `digits` (1..24) bits of u. With the significand width of the destination
// (bf16 8, f16 11, f32 24) every value is exact there, so rounding can never yield 1.0; 24 bits in
// a bf16 tensor would round ~0.2% of draws up to 1.0. (torch also draws `digits` bits per dtype.)
QTUNE_HD float uniform_from_bits(uint32_t u, int digits) {
  return static_cast<float>(u >> (32 - digits)) * (1.0f / static_cast<float>(1u << digits));
}

// Significand digits used for uniforms stored as f32/f64 (24), f16 (11) and bf16 (8).
constexpr int kUniformDigitsF32 = 24, kUniformDigitsF16 = 11, kUniformDigitsBF16 = 8;

// Random bits a uniform stored as T keeps, so that rounding to T never yields 1.0. A variable (not a
// function) so device code reads it without relaxed-constexpr.
template <class T>
inline constexpr int kUniformDigits = std::is_same_v<T, bf16_t>  ? kUniformDigitsBF16
                                      : std::is_same_v<T, f16_t> ? kUniformDigitsF16
                                                                 : kUniformDigitsF32;

QTUNE_HD float philox_uniform(uint64_t seed, uint64_t offset, uint64_t i, int digits = kUniformDigitsF32) {
  return uniform_from_bits(philox4x32(offset + i / 4, seed).v[i % 4], digits);
}

QTUNE_HD float philox_normal(uint64_t seed, uint64_t offset, uint64_t i) {
  const Philox4 r = philox4x32(offset + i / 2, seed);
  const int w = 2 * static_cast<int>(i % 2);
  const float u1 = 1.0f - uniform_from_bits(r.v[w]);  // (0, 1]: log stays finite
  const float u2 = uniform_from_bits(r.v[w + 1]);
  return std::sqrt(-2.0f * std::log(u1)) * std::cos(6.283185307179586f * u2);
}

QTUNE_HD uint64_t philox_blocks_for_uniform(uint64_t n) { return (n + 3) / 4; }
QTUNE_HD uint64_t philox_blocks_for_normal(uint64_t n) { return (n + 1) / 2; }

}  // namespace qtune::numerics
