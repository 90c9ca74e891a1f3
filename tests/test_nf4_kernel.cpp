// The CPU NF4 quantize kernel's code search (a bracketing search, not the 16-way one) against the scalar
// reference nf4_nearest_code: every bf16 value in [-1, 1], and f32 values around every midpoint of the
// table and at random. Each 64-block starts with 1.0 so its absmax is 1 and x = w exactly.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "engine/backend.h"
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

TEST_CASE("a weight quantized in pieces of whole scaler blocks against the pieces' common mean equals one quantize") {
  // 18 scaler blocks and a partial one (more than one kNF4MeanChunk of absmaxes; the last block partial), cut
  // into pieces of 7, 6 and the rest: each piece's codes and absmaxes alone, then the mean of all absmaxes,
  // then each piece's scalers and factors.
  const int64_t group = 64 * 256, n = 18 * group + group / 2 + 37;
  std::mt19937 g(5);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> values(static_cast<size_t>(n));
  for (float& v : values) v = normal(g);
  for (const DType dtype : {DType::f32, DType::bf16}) {
    INFO(dtype_name(dtype));
    const Tensor w = Tensor::from_vector(values, {n}).to(dtype);
    const quant::NF4Tensor whole = quant::NF4Tensor::quantize(w);
    Backend& cpu = backend_for(Device::cpu());
    const int64_t blocks = whole.scalers().numel();
    const std::vector<int64_t> cuts = {0, 7 * group, 13 * group, n};
    std::vector<float> absmax;
    std::vector<Tensor> codes;
    for (size_t p = 0; p + 1 < cuts.size(); ++p) {
      const Tensor piece = w.narrow(0, cuts[p], cuts[p + 1] - cuts[p]).contiguous();
      const int64_t piece_blocks = (piece.numel() + 63) / 64;
      codes.push_back(Tensor::empty({piece_blocks * 32}, DType::u8));
      const Tensor a = Tensor::empty({piece_blocks});
      cpu.nf4_encode(piece, codes.back(), a);
      const std::vector<float> part = a.to_vector<float>();
      absmax.insert(absmax.end(), part.begin(), part.end());
    }
    REQUIRE(static_cast<int64_t>(absmax.size()) == blocks);
    const float mean = dtype == DType::bf16 ? numerics::nf4_absmax_mean<bf16_t>(absmax.data(), blocks)
                                            : numerics::nf4_absmax_mean<float>(absmax.data(), blocks);
    const Tensor mean_t = Tensor::full({1}, mean, dtype);
    CHECK(std::memcmp(mean_t.data_ptr(), whole.mean().data_ptr(), mean_t.nbytes()) == 0);
    int64_t first_block = 0;
    for (size_t p = 0; p + 1 < cuts.size(); ++p) {
      const int64_t piece_blocks = codes[p].numel() / 32;
      const Tensor a = Tensor::from_vector(
          std::vector<float>(absmax.begin() + first_block, absmax.begin() + first_block + piece_blocks),
          {piece_blocks});
      const Tensor scalers = Tensor::empty({piece_blocks}, DType::i8);
      const Tensor factors = Tensor::empty({(piece_blocks + 255) / 256}, dtype);
      cpu.nf4_double_quantize(a, mean_t, scalers, factors);
      const auto same = [](const Tensor& x, const Tensor& y) {
        return x.nbytes() == y.nbytes() && std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()) == 0;
      };
      CHECK(same(codes[p], whole.codes().narrow(0, first_block * 32, piece_blocks * 32).contiguous()));
      CHECK(same(scalers, whole.scalers().narrow(0, first_block, piece_blocks).contiguous()));
      CHECK(same(factors, whole.factors().narrow(0, first_block / 256, factors.numel()).contiguous()));
      first_block += piece_blocks;
    }
  }
}
