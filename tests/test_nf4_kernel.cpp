// The CPU NF4 quantize kernel's code search (a bracketing search, not the 16-way one) against the scalar
// reference nf4_nearest_code: every bf16 value in [-1, 1], and f32 values around every midpoint of the
// table and at random. Each 64-block starts with 1.0 so its absmax is 1 and x = w exactly.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "engine/numerics/nf4.h"
#include "quant/nf4_tensor.h"

using namespace qtune;

namespace {

// values -> [1.0, 63 values, 1.0, 63 values, ...] as a flat weight of dtype D.
template <class D>
Tensor blocks_of(const std::vector<float>& values) {
  std::vector<float> w;
  for (size_t i = 0; i < values.size(); ++i) {
    if (w.size() % 64 == 0) w.push_back(1.0f);
    w.push_back(values[i]);
  }
  const Tensor t = Tensor::from_vector(w, {static_cast<int64_t>(w.size())});
  return std::is_same_v<D, bf16_t> ? t.to(DType::bf16) : t;
}

// The number of elements whose kernel code differs from the scalar search.
template <class D>
int64_t mismatches(const std::vector<float>& values) {
  const Tensor w = blocks_of<D>(values);
  const Tensor w32 = w.to(DType::f32);
  const quant::NF4Tensor nf4 = quant::NF4Tensor::quantize(w);
  float table[16];
  for (int c = 0; c < 16; ++c) table[c] = numerics::nf4_code_value<D>(c);
  const auto* codes = static_cast<const uint8_t*>(nf4.codes().data_ptr());
  const auto* x = static_cast<const float*>(w32.data_ptr());
  int64_t bad = 0;
  for (int64_t i = 0; i < w.numel(); ++i) {
    const uint8_t expected = numerics::nf4_nearest_code<D>(x[i], table);
    if (numerics::nf4_code_at(codes, i) != expected) {
      if (bad < 5)
        MESSAGE("x = ", x[i], ": kernel code ", int(numerics::nf4_code_at(codes, i)), ", scalar ", int(expected));
      ++bad;
    }
  }
  return bad;
}

// f32 values within `ulps` steps of every midpoint of D's table, plus uniform random ones in [-1, 1].
template <class D>
std::vector<float> f32_cases(int ulps) {
  std::vector<float> v;
  for (int c = 0; c < 15; ++c) {
    float x = (numerics::nf4_code_value<D>(c) + numerics::nf4_code_value<D>(c + 1)) / 2;
    for (int i = 0; i < ulps; ++i) x = std::nextafter(x, -2.0f);
    for (int i = 0; i < 2 * ulps + 1; ++i, x = std::nextafter(x, 2.0f)) v.push_back(x);
  }
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int i = 0; i < 100000; ++i) v.push_back(u(rng));
  v.push_back(-1.0f);
  v.push_back(-0.0f);
  v.push_back(std::nanf(""));  // absmax ignores it (std::max keeps 1); x is NaN: code 0
  return v;
}

}  // namespace

TEST_CASE("NF4 code search, bf16: every value in [-1, 1] gets the scalar search's code") {
  std::vector<float> values;
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    const uint32_t f32_bits = bits << 16;
    float v;
    std::memcpy(&v, &f32_bits, sizeof v);
    if (std::fabs(v) <= 1.0f) values.push_back(v);
  }
  REQUIRE(values.size() > 32000);
  CHECK(mismatches<bf16_t>(values) == 0);
  CHECK(mismatches<bf16_t>(f32_cases<bf16_t>(300)) == 0);  // rounded to bf16 first: midpoint neighbourhoods
}

TEST_CASE("NF4 code search, f32: around every midpoint (ties to the lower code) and at random") {
  CHECK(mismatches<float>(f32_cases<float>(64)) == 0);
}

TEST_CASE("NF4 dequantize: whole-block lookups equal the scalar formula, f32 and bf16 in and out") {
  std::vector<float> values = f32_cases<float>(8);
  values.pop_back();  // no NaN: NaN != NaN
  const Tensor w32 = Tensor::from_vector(values, {static_cast<int64_t>(values.size())});
  for (const DType in : {DType::f32, DType::bf16}) {
    const quant::NF4Tensor nf4 = quant::NF4Tensor::quantize(w32.to(in));
    const Tensor parts_f32[] = {nf4.factors().to(DType::f32), nf4.mean().to(DType::f32)};
    const auto* factors = static_cast<const float*>(parts_f32[0].data_ptr());
    const float mean = *static_cast<const float*>(parts_f32[1].data_ptr());
    const auto* scalers = static_cast<const int8_t*>(nf4.scalers().data_ptr());
    const auto* codes = static_cast<const uint8_t*>(nf4.codes().data_ptr());
    std::vector<float> expected;
    for (int64_t i = 0; i < nf4.numel(); ++i) {
      float table[16], scale;
      for (int c = 0; c < 16; ++c)
        table[c] = in == DType::bf16 ? numerics::nf4_code_value<bf16_t>(c) : numerics::nf4_code_value<float>(c);
      const int64_t b = i / 64;
      const uint8_t code = numerics::nf4_code_at(codes, i);
      if (in == DType::bf16) {
        scale = numerics::nf4_block_scale<bf16_t>(scalers[b], factors[b / 256], mean);
        expected.push_back(numerics::nf4_dequantize_value<bf16_t>(code, scale, table));
      } else {
        scale = numerics::nf4_block_scale<float>(scalers[b], factors[b / 256], mean);
        expected.push_back(numerics::nf4_dequantize_value<float>(code, scale, table));
      }
    }
    const Tensor expected_t = Tensor::from_vector(expected, {nf4.numel()});
    for (const DType out : {DType::f32, DType::bf16}) {
      CAPTURE(dtype_name(in));
      CAPTURE(dtype_name(out));
      const Tensor got = Tensor::empty({nf4.numel()}, out);
      nf4.dequantize_range(0, got);
      CHECK(got.to(DType::f32).to_vector<float>() == expected_t.to(out).to(DType::f32).to_vector<float>());
    }
  }
}
