// The CPU 8da4w GEMM (Backend::int8_int4_linear) on both of its paths, the AVX-512 VNNI kernel (built for
// CPUs that have it, K a multiple of 128) and the portable one (forced with QTUNE_INT4_PORTABLE=1), against
// an exact-integer reference: row/token counts that fill and miss the register tiles (2 rows x 4 tokens)
// and the 32-row tiles, every group size.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <random>
#include <vector>

#include "engine/backend.h"

using namespace qtune;

namespace {

struct Problem {
  int64_t tokens, k_in, m_out, group;
  std::vector<int8_t> codes;
  std::vector<float> x_scale;
  std::vector<int32_t> x_zp;
  std::vector<uint8_t> w_packed;
  std::vector<float> w_scale;
};

Problem random_problem(int64_t tokens, int64_t k_in, int64_t m_out, int64_t group, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(0.001f, 0.1f);
  Problem p{tokens, k_in, m_out, group, {}, {}, {}, {}, {}};
  for (int64_t i = 0; i < tokens * k_in; ++i) p.codes.push_back(static_cast<int8_t>(byte(rng) - 128));
  for (int64_t n = 0; n < tokens; ++n) {
    p.x_scale.push_back(scale(rng));
    p.x_zp.push_back(byte(rng) - 128);
  }
  for (int64_t i = 0; i < m_out * k_in / 2; ++i) p.w_packed.push_back(static_cast<uint8_t>(byte(rng)));
  for (int64_t i = 0; i < m_out * k_in / group; ++i) p.w_scale.push_back(scale(rng));
  return p;
}

// out[n, m] = x_scale[n] * sum_g w_scale[m, g] * sum_{k in g} (codes[n, k] - x_zp[n]) * (nibble - 8), in f64.
std::vector<double> reference(const Problem& p) {
  std::vector<double> y(static_cast<size_t>(p.tokens * p.m_out));
  for (int64_t n = 0; n < p.tokens; ++n)
    for (int64_t m = 0; m < p.m_out; ++m) {
      double acc = 0.0;
      for (int64_t g = 0; g < p.k_in / p.group; ++g) {
        int64_t dot = 0;
        for (int64_t k = g * p.group; k < (g + 1) * p.group; ++k) {
          const uint8_t b = p.w_packed[m * p.k_in / 2 + k / 2];
          const int64_t w = (k % 2 == 0 ? b & 0xf : b >> 4) - 8;
          dot += (p.codes[n * p.k_in + k] - p.x_zp[n]) * w;
        }
        acc += double(p.w_scale[m * (p.k_in / p.group) + g]) * double(dot);
      }
      y[n * p.m_out + m] = acc * p.x_scale[n];
    }
  return y;
}

std::vector<float> run(const Problem& p, bool portable) {
  if (portable)
    setenv("QTUNE_INT4_PORTABLE", "1", 1);
  else
    unsetenv("QTUNE_INT4_PORTABLE");
  const Tensor out = Tensor::empty({p.tokens, p.m_out}, DType::f32);
  backend_for(Device::cpu())
      .int8_int4_linear(Tensor::from_data(p.codes.data(), {p.tokens, p.k_in}, DType::i8),
                        Tensor::from_data(p.x_scale.data(), {p.tokens}, DType::f32),
                        Tensor::from_data(p.x_zp.data(), {p.tokens}, DType::i32),
                        Tensor::from_data(p.w_packed.data(), {p.m_out, p.k_in / 2}, DType::u8),
                        Tensor::from_data(p.w_scale.data(), {p.m_out, p.k_in / p.group}, DType::f32), out);
  unsetenv("QTUNE_INT4_PORTABLE");
  const float* y = static_cast<const float*>(out.data_ptr());
  return std::vector<float>(y, y + out.numel());
}

// Max |got - expected| relative to max |expected|: the f32 accumulation over groups is the only rounding.
double relative_error(const std::vector<float>& got, const std::vector<double>& expected) {
  double err = 0.0, ref = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    err = std::max(err, std::fabs(got[i] - expected[i]));
    ref = std::max(ref, std::fabs(expected[i]));
  }
  return err / ref;
}

}  // namespace

TEST_CASE("int8 x int4 GEMM: both paths equal the exact-integer reference") {
  uint32_t seed = 1;
  for (const int64_t group : {32, 64, 128, 256})
    for (const int64_t k_in : {256, 768})
      for (const int64_t tokens : {1, 2, 3, 4, 5, 9})
        for (const int64_t m_out : {1, 3, 33, 70}) {
          CAPTURE(group);
          CAPTURE(k_in);
          CAPTURE(tokens);
          CAPTURE(m_out);
          const Problem p = random_problem(tokens, k_in, m_out, group, seed++);
          const std::vector<double> expected = reference(p);
          CHECK(relative_error(run(p, false), expected) <= 1e-5);
          CHECK(relative_error(run(p, true), expected) <= 1e-5);
        }
}

TEST_CASE("int8 x int4 GEMM: K not a multiple of 128 takes the portable path") {
  const Problem p = random_problem(5, 96, 7, 32, 99);
  CHECK(relative_error(run(p, false), reference(p)) <= 1e-5);
}

TEST_CASE("int8 x int4 GEMM: enough rows and tokens to split the row tiles across threads") {
  // 16 tiles of 32 rows, 8 Mi multiply-adds: 4 tiles a thread at least, so two threads share them.
  const Problem p = random_problem(32, 512, 512, 32, 123);
  const std::vector<double> expected = reference(p);
  CHECK(relative_error(run(p, false), expected) <= 1e-5);
  CHECK(relative_error(run(p, true), expected) <= 1e-5);
}
