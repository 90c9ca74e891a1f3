// Philox 4x32-10 against the published Random123 known-answer vectors, then the stream layout that
// engine/numerics/philox.h documents, Generator bookkeeping, and the distributions' statistics.
#include <cmath>

#include "engine/numerics/philox.h"
#include "engine/rng.h"
#include "tests/testing.h"

using namespace qtune;
using numerics::Philox4;

namespace {
// Independent of uniform_from_bits: the top 24 bits as a fraction, in double.
double top24(uint32_t word) { return std::ldexp(static_cast<double>(word >> 8), -24); }
}  // namespace

TEST_CASE("Philox4x32-10 matches the Random123 known-answer vectors (kat_vectors)") {
  struct Kat {
    Philox4 counter;
    uint32_t k0, k1;
    Philox4 expect;
  };
  const Kat kats[] = {
      {{{0, 0, 0, 0}}, 0, 0, {{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}}},
      {{{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}},
       0xffffffffu,
       0xffffffffu,
       {{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}}},
      {{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}},
       0xa4093822u,
       0x299f31d0u,
       {{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}}},
  };
  for (const Kat& k : kats) {
    const Philox4 got = numerics::philox4x32_10(k.counter, k.k0, k.k1);
    for (int w = 0; w < 4; ++w) CHECK(got.v[w] == k.expect.v[w]);
  }
  // The 64-bit stream function is the same bijection with counter (lo, hi, 0, 0), key (lo, hi).
  const Philox4 a = numerics::philox4x32(0x0123456789abcdefull, 0xfedcba9876543210ull);
  const Philox4 b = numerics::philox4x32_10({{0x89abcdefu, 0x01234567u, 0, 0}}, 0x76543210u, 0xfedcba98u);
  for (int w = 0; w < 4; ++w) CHECK(a.v[w] == b.v[w]);
}

TEST_CASE("rand and randn follow the documented stream layout") {
  const uint64_t seed = 0x5eed, offset = 7;
  Generator gen;
  gen.set_state(seed, offset);
  const auto u = rand({10}, DType::f64, Device::cpu(), &gen).to_vector<double>();
  CHECK(gen.offset() == offset + 3);  // ceil(10 / 4) blocks
  for (uint64_t i = 0; i < 10; ++i) {
    const Philox4 block = numerics::philox4x32(offset + i / 4, seed);
    CHECK(u[i] == top24(block.v[i % 4]));
  }
  gen.set_state(seed, offset);
  const auto z = randn({5}, DType::f64, Device::cpu(), &gen).to_vector<double>();
  CHECK(gen.offset() == offset + 3);  // ceil(5 / 2) blocks
  for (uint64_t i = 0; i < 5; ++i) {
    const Philox4 block = numerics::philox4x32(offset + i / 2, seed);
    const double u1 = 1.0 - top24(block.v[2 * (i % 2)]), u2 = top24(block.v[2 * (i % 2) + 1]);
    const double want = std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
    CHECK(std::fabs(z[i] - want) <= 1e-5 * (1.0 + std::fabs(want)));  // the kernel computes in f32
  }
}

TEST_CASE("Generator determinism and offsets") {
  Generator a(123), b(123);
  const auto x = rand({1000}, DType::f32, Device::cpu(), &a).to_vector<float>();
  const auto y = rand({1000}, DType::f32, Device::cpu(), &b).to_vector<float>();
  CHECK(x == y);
  CHECK(a.offset() == 250);
  const auto x2 = rand({1000}, DType::f32, Device::cpu(), &a).to_vector<float>();
  CHECK(x2 != x);
  CHECK(a.offset() == 500);

  // Two draws whose sizes are multiples of 4 (uniform) / 2 (normal) are the halves of one draw.
  Generator one(9), two(9);
  const auto whole = rand({16}, DType::f32, Device::cpu(), &one).to_vector<float>();
  const auto first = rand({8}, DType::f32, Device::cpu(), &two).to_vector<float>();
  const auto second = rand({8}, DType::f32, Device::cpu(), &two).to_vector<float>();
  CHECK(std::vector<float>(whole.begin(), whole.begin() + 8) == first);
  CHECK(std::vector<float>(whole.begin() + 8, whole.end()) == second);
  const auto nwhole = randn({6}, DType::f32, Device::cpu(), &one).to_vector<float>();
  const auto nfirst = randn({2}, DType::f32, Device::cpu(), &two).to_vector<float>();
  const auto nsecond = randn({4}, DType::f32, Device::cpu(), &two).to_vector<float>();
  CHECK(std::vector<float>(nwhole.begin(), nwhole.begin() + 2) == nfirst);
  CHECK(std::vector<float>(nwhole.begin() + 2, nwhole.end()) == nsecond);
  CHECK(one.offset() == two.offset());

  // A different seed gives a different stream; the default generator resets with manual_seed.
  Generator c(124);
  CHECK(rand({8}, DType::f32, Device::cpu(), &c).to_vector<float>() != first);
  manual_seed(77);
  const auto d1 = randn({33}).to_vector<float>();
  CHECK(default_generator().offset() == 17);
  manual_seed(77);
  CHECK(randn({33}).to_vector<float>() == d1);
  // f64 and f32 draw the same 24-bit uniforms.
  Generator f(5), g(5);
  const auto u32 = rand({64}, DType::f32, Device::cpu(), &f).to_vector<double>();
  CHECK(rand({64}, DType::f64, Device::cpu(), &g).to_vector<double>() == u32);
}

TEST_CASE("reduced-precision uniforms stay below 1 and use the dtype's significand bits") {
  const int64_t n = 100000;
  for (DType dt : {DType::bf16, DType::f16}) {
    CAPTURE(dtype_name(dt));
    const int digits = dt == DType::bf16 ? 8 : 11;
    Generator gen(31);
    const auto u = rand({n}, dt, Device::cpu(), &gen).to_vector<double>();
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t word = numerics::philox4x32(static_cast<uint64_t>(i) / 4, 31).v[i % 4];
      REQUIRE(u[static_cast<size_t>(i)] == std::ldexp(static_cast<double>(word >> (32 - digits)), -digits));
      REQUIRE(u[static_cast<size_t>(i)] < 1.0);
      sum += u[static_cast<size_t>(i)];
    }
    // Mean of k / 2^d over k uniform in [0, 2^d): 0.5 - 2^-(d+1).
    CHECK(std::fabs(sum / n - (0.5 - std::ldexp(1.0, -digits - 1))) < 5 * std::sqrt(1.0 / 12 / n));
  }
}

TEST_CASE("uniform and normal statistics over 1e5 samples") {
  const int64_t n = 100000;
  Generator gen(2024);
  const auto u = rand({n}, DType::f32, Device::cpu(), &gen).to_vector<double>();
  double sum = 0, sq = 0, lo = 1, hi = 0;
  for (double v : u) {
    sum += v, sq += v * v;
    lo = std::min(lo, v), hi = std::max(hi, v);
  }
  CHECK(lo >= 0.0);
  CHECK(hi < 1.0);
  const double mean = sum / n, var = sq / n - mean * mean;
  CHECK(std::fabs(mean - 0.5) < 5 * std::sqrt(1.0 / 12 / n));
  CHECK(std::fabs(var - 1.0 / 12) < 5 * std::sqrt(1.0 / 180 / n));  // Var(s^2) = (mu4 - sigma^4) / n = 1 / (180 n)

  const auto s = rand({n}, DType::f32, Device::cpu(), &gen, -3.0, 5.0).to_vector<double>();
  for (double v : s) REQUIRE((v >= -3.0 && v < 5.0));

  const auto z = randn({n}, DType::f32, Device::cpu(), &gen, 2.0, 3.0).to_vector<double>();
  double zs = 0, zq = 0;
  for (double v : z) zs += v;
  const double zm = zs / n;
  for (double v : z) zq += (v - zm) * (v - zm);
  const double zstd = std::sqrt(zq / (n - 1));
  CHECK(std::fabs(zm - 2.0) < 5 * 3.0 / std::sqrt(n));
  CHECK(std::fabs(zstd - 3.0) < 5 * 3.0 / std::sqrt(2.0 * n));
  // Tails: about 0.27% of a normal lies beyond 3 sigma.
  int64_t beyond = 0;
  for (double v : z) beyond += std::fabs(v - 2.0) > 9.0;
  CHECK(std::fabs(static_cast<double>(beyond) / n - 0.0027) < 0.001);
}
