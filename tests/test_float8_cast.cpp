// The fp8 casts and scales of docs/numerics.md §3 from first principles, beyond test_numerics.cpp's torch
// goldens: every tie and near-tie between adjacent codes in f64 (where an f32 detour would round
// twice), saturation just above max, the subnormal range, and the scale rule of fp8_scale_of.
#include <doctest/doctest.h>

#include <cmath>
#include <initializer_list>

#include "engine/numerics/fp8.h"
#include "engine/numerics/fp8_scale.h"

using namespace qtune::numerics;

namespace {

template <class Fmt>
double value_of(int code) {
  return decode_fp8<Fmt>(static_cast<uint8_t>(code));
}

// The largest finite positive code: 0x7e for e4m3 (0x7f is NaN), 0x7b for e5m2 (0x7c.. are inf/NaN).
template <class Fmt>
int max_code() {
  return Fmt::exp_bits == 4 ? 0x7e : 0x7b;
}

// Between each pair of adjacent non-negative codes: the exact midpoint goes to the even code (round to
// nearest even), and the midpoint moved by 2^-20 of the gap in either direction -- not representable
// in f32, so an f64 -> f32 -> fp8 path would land on the tie -- goes to the nearer code. Both signs.
template <class Fmt>
void check_ties_and_near_ties() {
  for (int c = 0; c < max_code<Fmt>(); ++c) {
    const double lo = value_of<Fmt>(c), hi = value_of<Fmt>(c + 1);
    const double mid = (lo + hi) / 2, nudge = (hi - lo) * 0x1p-20;
    const int even = (c % 2 == 0) ? c : c + 1;
    CAPTURE(c);
    CHECK(int(encode_fp8<Fmt>(mid)) == even);
    CHECK(int(encode_fp8<Fmt>(-mid)) == (even | 0x80));
    CHECK(int(encode_fp8<Fmt>(mid - nudge)) == c);
    CHECK(int(encode_fp8<Fmt>(mid + nudge)) == c + 1);
    CHECK(int(encode_fp8<Fmt>(-(mid + nudge))) == ((c + 1) | 0x80));
    CHECK(int(encode_fp8<Fmt>(static_cast<float>(lo))) == c);  // every code's value encodes to itself
  }
}

}  // namespace

TEST_CASE("fp8 encode: exact ties round to even, near ties (f64) to the nearer code, for both formats") {
  check_ties_and_near_ties<E4M3>();
  check_ties_and_near_ties<E5M2>();
}

TEST_CASE("fp8 encode saturates anything above max, including the would-be next step's halfway point") {
  // e4m3: the step above 448 would be 480; 464 is its halfway point, which an IEEE-style cast rounds up.
  for (double v : {448.0, 448.0 + 1e-9, 464.0, 479.0, 480.0, 1e30}) {
    CAPTURE(v);
    CHECK(int(encode_fp8<E4M3>(v)) == 0x7e);
    CHECK(int(encode_fp8<E4M3>(-v)) == 0xfe);
  }
  // e5m2: the next step would be 61440 (halfway 59392); infinity saturates too.
  for (double v : {57344.0, 59392.0, 61440.0, 1e30, double(INFINITY)}) {
    CAPTURE(v);
    CHECK(int(encode_fp8<E5M2>(v)) == 0x7b);
    CHECK(int(encode_fp8<E5M2>(-v)) == 0xfb);
  }
  // Just below max's lower halfway point stays on the code below max.
  CHECK(int(encode_fp8<E4M3>(432.0 - 1e-9)) == 0x7d);  // 416 | 448: midpoint 432
  CHECK(int(encode_fp8<E4M3>(432.0)) == 0x7e);         // tie: 0x7e is even
}

TEST_CASE("fp8 subnormals: steps of 2^-9 (e4m3) and 2^-16 (e5m2), ties to even down to zero") {
  CHECK(value_of<E4M3>(0x01) == std::ldexp(1.0, -9));
  CHECK(value_of<E4M3>(0x07) == 7 * std::ldexp(1.0, -9));
  CHECK(value_of<E4M3>(0x08) == std::ldexp(1.0, -6));  // the smallest normal
  CHECK(value_of<E5M2>(0x01) == std::ldexp(1.0, -16));
  CHECK(value_of<E5M2>(0x04) == std::ldexp(1.0, -14));
  // Half the smallest subnormal ties between 0 (even) and 0x01; a hair above rounds up.
  CHECK(int(encode_fp8<E4M3>(std::ldexp(1.0, -10))) == 0x00);
  CHECK(int(encode_fp8<E4M3>(std::ldexp(1.0, -10) * (1 + 1e-9))) == 0x01);
  CHECK(int(encode_fp8<E5M2>(std::ldexp(1.0, -17))) == 0x00);
  CHECK(int(encode_fp8<E4M3>(-std::ldexp(1.0, -11))) == 0x80);  // underflow keeps the sign
  // The largest subnormal's halfway point to the smallest normal: 7.5 * 2^-9 ties to 0x08 (even).
  CHECK(int(encode_fp8<E4M3>(7.5 * std::ldexp(1.0, -9))) == 0x08);
}

TEST_CASE("fp8_scale_of: f32(max / max(amax, 1e-12)) divided in f64, power-of-two rounding is exact") {
  CHECK(fp8_scale_of(1.0, E4M3::max, false) == 448.0f);
  CHECK(fp8_scale_of(3.0, E4M3::max, false) == static_cast<float>(448.0 / 3.0));
  // Zero and tiny amax clamp at 1e-12 instead of dividing by zero.
  CHECK(fp8_scale_of(0.0, E4M3::max, false) == static_cast<float>(448.0 / 1e-12));
  CHECK(fp8_scale_of(1e-20, E5M2::max, false) == static_cast<float>(57344.0 / 1e-12));
  // Power-of-two rounding goes down: 448 -> 256, 149.33 -> 128, exact powers stay.
  CHECK(fp8_scale_of(1.0, E4M3::max, true) == 256.0f);
  CHECK(fp8_scale_of(3.0, E4M3::max, true) == 128.0f);
  CHECK(fp8_scale_of(448.0 / 64, E4M3::max, true) == 64.0f);
  // A scale one f32 ulp below 2^10 rounds to 2^9, where f32 log2 would round up to 10.
  const double amax = 448.0 / std::nextafter(1024.0f, 0.0f);
  REQUIRE(static_cast<float>(448.0 / amax) == std::nextafter(1024.0f, 0.0f));
  CHECK(fp8_scale_of(amax, E4M3::max, true) == 512.0f);
  // The rounded scale never pushes amax * scale over max.
  for (double a : {0.37, 1.0, 5.5, 1234.5}) CHECK(a * fp8_scale_of(a, E5M2::max, true) <= E5M2::max);
}
