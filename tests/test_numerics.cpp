// dtype conversions against PyTorch (tests/golden/numerics.json, tools/goldens/gen_numerics.py) and
// against the compiler's own IEEE binary16 (_Float16): the scalar numerics and the copy kernel
// (Tensor::to) must both produce the reference bits.
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/numerics/bf16.h"
#include "engine/numerics/f16.h"
#include "engine/numerics/fp8.h"
#include "tests/testing.h"

using namespace qtune;
using namespace qtune::numerics;

namespace {

const nlohmann::json& golden() {
  static const nlohmann::json doc = [] {
    std::ifstream in(std::string(QTUNE_GOLDEN_DIR) + "/numerics.json");
    REQUIRE_MESSAGE(in.good(), "missing tests/golden/numerics.json (tools/goldens/gen_numerics.py)");
    return nlohmann::json::parse(in);
  }();
  return doc;
}

std::vector<float> floats_of(const std::vector<uint32_t>& bits) {
  std::vector<float> out;
  for (uint32_t u : bits) out.push_back(float_of(u));
  return out;
}

bool is_quiet_nan_f16(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x0200u) != 0; }
bool is_quiet_nan_bf16(uint16_t h) { return (h & 0x7f80u) == 0x7f80u && (h & 0x0040u) != 0; }

// Checks one golden table ("edge" or "random"): scalar functions and the copy kernel, contiguous
// and strided, against torch's bits.
void check_casts(const nlohmann::json& table) {
  const auto in_bits = table.at("input").get<std::vector<uint32_t>>();
  const auto want_bf16 = table.at("bf16").get<std::vector<uint16_t>>();
  const auto want_f16 = table.at("f16").get<std::vector<uint16_t>>();
  const auto want_e4m3 = table.at("e4m3").get<std::vector<uint8_t>>();
  const auto want_e5m2 = table.at("e5m2").get<std::vector<uint8_t>>();
  const std::vector<float> xs = floats_of(in_bits);
  const int64_t n = static_cast<int64_t>(xs.size());

  const Tensor x = Tensor::from_vector(xs, {n});
  // A strided source: every element sits at an odd index of a twice-as-long buffer.
  std::vector<float> spread(static_cast<size_t>(2 * n), 0.0f);
  for (int64_t i = 0; i < n; ++i) spread[static_cast<size_t>(2 * i + 1)] = xs[static_cast<size_t>(i)];
  const Tensor xs_strided = Tensor::from_vector(spread, {n, 2}).select(1, 1);
  REQUIRE_FALSE(xs_strided.is_contiguous());

  for (const Tensor& src : {x, xs_strided}) {
    const Tensor bf = src.to(DType::bf16), hf = src.to(DType::f16);
    const Tensor e4 = src.to(DType::f8_e4m3), e5 = src.to(DType::f8_e5m2);
    const bf16_t* pb = bf.data<bf16_t>();
    const f16_t* ph = hf.data<f16_t>();
    const f8_e4m3_t* p4 = e4.data<f8_e4m3_t>();
    const f8_e5m2_t* p5 = e5.data<f8_e5m2_t>();
    int failures = 0;
    for (int64_t i = 0; i < n && failures < 20; ++i) {
      const size_t k = static_cast<size_t>(i);
      const float v = xs[k];
      CAPTURE(i);
      CAPTURE(in_bits[k]);
      const bool nan = std::isnan(v);
      // torch writes one canonical NaN; docs/numerics.md only asks that NaN stays a (quiet) NaN.
      if (nan) {
        CHECK(is_quiet_nan_bf16(f32_to_bf16_bits(v)));
        CHECK(is_quiet_nan_bf16(pb[i].bits));
        CHECK(is_quiet_nan_f16(f32_to_f16_bits(v)));
        CHECK(is_quiet_nan_f16(ph[i].bits));
        CHECK(std::isnan(e4m3_to_f32(f32_to_e4m3(v))));
        CHECK(std::isnan(e4m3_to_f32(p4[i].bits)));
        CHECK(std::isnan(e5m2_to_f32(f32_to_e5m2(v))));
        CHECK(std::isnan(e5m2_to_f32(p5[i].bits)));
        continue;
      }
      const bool ok = f32_to_bf16_bits(v) == want_bf16[k] && pb[i].bits == want_bf16[k] &&
                      f32_to_f16_bits(v) == want_f16[k] && ph[i].bits == want_f16[k] &&
                      f32_to_e4m3(v) == want_e4m3[k] && p4[i].bits == want_e4m3[k] && f32_to_e5m2(v) == want_e5m2[k] &&
                      p5[i].bits == want_e5m2[k];
      if (!ok) {
        ++failures;
        CHECK(f32_to_bf16_bits(v) == want_bf16[k]);
        CHECK(pb[i].bits == want_bf16[k]);
        CHECK(f32_to_f16_bits(v) == want_f16[k]);
        CHECK(ph[i].bits == want_f16[k]);
        CHECK(int(f32_to_e4m3(v)) == int(want_e4m3[k]));
        CHECK(int(p4[i].bits) == int(want_e4m3[k]));
        CHECK(int(f32_to_e5m2(v)) == int(want_e5m2[k]));
        CHECK(int(p5[i].bits) == int(want_e5m2[k]));
      }
    }
    CHECK(failures == 0);
  }

  // Widening back: the copy kernel's bf16/f16/fp8 -> f32 equals the scalar decoders.
  const auto back_bf = x.to(DType::bf16).to(DType::f32).to_vector<float>();
  const auto back_h = x.to(DType::f16).to(DType::f32).to_vector<float>();
  const auto back_4 = x.to(DType::f8_e4m3).to(DType::f32).to_vector<float>();
  const auto back_5 = x.to(DType::f8_e5m2).to(DType::f64).to_vector<double>();
  for (size_t k = 0; k < xs.size(); ++k) {
    if (std::isnan(xs[k])) continue;
    CHECK(bits_of(back_bf[k]) == bits_of(bf16_bits_to_f32(want_bf16[k])));
    CHECK(bits_of(back_h[k]) == bits_of(f16_bits_to_f32(want_f16[k])));
    CHECK(bits_of(back_4[k]) == bits_of(e4m3_to_f32(want_e4m3[k])));
    CHECK(back_5[k] == static_cast<double>(e5m2_to_f32(want_e5m2[k])));
  }
}

template <class T>
void check_int_cast(const char* name, DType dtype) {
  const auto& table = golden().at("int").at(name);
  const std::vector<float> xs = floats_of(table.at("input").get<std::vector<uint32_t>>());
  const auto want = table.at("output").get<std::vector<int64_t>>();
  const Tensor out = Tensor::from_vector(xs, {static_cast<int64_t>(xs.size())}).to(dtype);
  const T* p = out.data<T>();
  for (size_t k = 0; k < xs.size(); ++k) {
    CAPTURE(xs[k]);
    CHECK(static_cast<int64_t>(p[k]) == want[k]);
  }
}

}  // namespace

TEST_CASE("fp8 decode of all 256 codes matches torch, and every non-NaN code re-encodes to itself") {
  for (const char* fmt : {"e4m3", "e5m2"}) {
    CAPTURE(fmt);
    const auto want = golden().at("decode").at(fmt).get<std::vector<uint32_t>>();
    REQUIRE(want.size() == 256);
    std::vector<uint8_t> codes(256);
    for (int c = 0; c < 256; ++c) codes[static_cast<size_t>(c)] = static_cast<uint8_t>(c);
    const bool e4 = std::string(fmt) == "e4m3";
    const Tensor t = Tensor::from_data(codes.data(), {256}, e4 ? DType::f8_e4m3 : DType::f8_e5m2);
    const auto via_copy = t.to_vector<float>();
    int nans = 0;
    for (int c = 0; c < 256; ++c) {
      CAPTURE(c);
      const float ref = float_of(want[static_cast<size_t>(c)]);
      const float got = e4 ? e4m3_to_f32(static_cast<uint8_t>(c)) : e5m2_to_f32(static_cast<uint8_t>(c));
      if (std::isnan(ref)) {
        ++nans;
        CHECK(std::isnan(got));
        CHECK(std::isnan(via_copy[static_cast<size_t>(c)]));
        continue;
      }
      CHECK(bits_of(got) == want[static_cast<size_t>(c)]);
      CHECK(bits_of(via_copy[static_cast<size_t>(c)]) == want[static_cast<size_t>(c)]);
      if (std::isinf(ref)) continue;  // e5m2 infinities saturate on the way back in (§3)
      const uint8_t back = e4 ? f32_to_e4m3(got) : f32_to_e5m2(got);
      CHECK(int(back) == c);
    }
    CHECK(nans == (e4 ? 2 : 6));
  }
}

TEST_CASE("f32 -> bf16/f16/fp8 edge cases match torch bit for bit (scalar and copy kernel)") {
  check_casts(golden().at("edge"));
}

TEST_CASE("f32 -> bf16/f16/fp8 on random values across exponent ranges match torch") {
  check_casts(golden().at("random"));
}

TEST_CASE("fp8 saturation, -0.0 and infinities as docs/numerics.md §3 specifies") {
  // Independent of torch: the spec's own statements.
  CHECK(e4m3_to_f32(f32_to_e4m3(INFINITY)) == 448.0f);
  CHECK(e4m3_to_f32(f32_to_e4m3(-INFINITY)) == -448.0f);
  CHECK(e4m3_to_f32(f32_to_e4m3(1e9f)) == 448.0f);
  CHECK(e5m2_to_f32(f32_to_e5m2(INFINITY)) == 57344.0f);
  CHECK(e5m2_to_f32(f32_to_e5m2(-70000.0f)) == -57344.0f);
  CHECK(int(f32_to_e4m3(-0.0f)) == 0x80);
  CHECK(int(f32_to_e5m2(-0.0f)) == 0x80);
}

TEST_CASE("f16 agrees with the compiler's IEEE binary16 on every code and on random f32 inputs") {
  for (uint32_t h = 0; h < 65536; ++h) {
    _Float16 ref;
    const uint16_t bits = static_cast<uint16_t>(h);
    std::memcpy(&ref, &bits, 2);
    const float want = static_cast<float>(ref);
    const float got = f16_bits_to_f32(bits);
    if (std::isnan(want)) {
      REQUIRE(std::isnan(got));
      continue;
    }
    REQUIRE_MESSAGE(bits_of(got) == bits_of(want), "f16 code ", h);
    REQUIRE_MESSAGE(f32_to_f16_bits(want) == bits, "f16 code ", h, " does not round-trip");
  }
  uint64_t state = 0x9e3779b97f4a7c15ull;
  for (int i = 0; i < 200000; ++i) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    uint32_t u = static_cast<uint32_t>(state >> 32);
    if (i % 2) u = (u & 0x807fffffu) | ((97u + (u >> 23) % 50u) << 23);  // mostly where f16 has codes
    const float x = float_of(u);
    if (std::isnan(x)) continue;
    const _Float16 ref = static_cast<_Float16>(x);
    uint16_t want;
    std::memcpy(&want, &ref, 2);
    REQUIRE_MESSAGE(f32_to_f16_bits(x) == want, "f32 bits ", u);
  }
}

TEST_CASE("float -> integer casts truncate toward zero; -> bool is != 0 (torch)") {
  check_int_cast<int64_t>("i64", DType::i64);
  check_int_cast<int32_t>("i32", DType::i32);
  check_int_cast<int8_t>("i8", DType::i8);
  check_int_cast<uint8_t>("u8", DType::u8);
  check_int_cast<bool>("bool", DType::boolean);
}

TEST_CASE("integer and bool sources widen exactly") {
  const Tensor i = Tensor::from_vector<int64_t>({-3, 0, 7, (int64_t{1} << 40) + 1}, {4});
  CHECK(i.to(DType::f64).to_vector<double>() == std::vector<double>{-3, 0, 7, 1099511627777.0});
  const bool flags[3] = {true, false, true};
  const Tensor b = Tensor::from_data(flags, {3}, DType::boolean);
  CHECK(b.to(DType::f32).to_vector<float>() == std::vector<float>{1, 0, 1});
  CHECK(b.to(DType::i32).to_vector<int32_t>() == std::vector<int32_t>{1, 0, 1});
}
