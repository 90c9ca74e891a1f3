// QAT fake quantization (docs/numerics.md §2): engine/numerics/intx_quant.h, Backend::fake_quantize and
// quant::fake_quantize against torchao 0.18 / ggml goldens (tools/goldens/gen_qat.py), bit for bit.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/numerics/intx_quant.h"
#include "quant/qat_fake_quantize.h"
#include "tests/testing.h"

using namespace qtune;
using numerics::FakeQuantKind;
using numerics::FakeQuantSpec;

namespace {

const std::map<std::string, testing::GoldenCase>& goldens() {
  static const auto g = testing::load_golden("qat/fake_quant.json");
  return g;
}

FakeQuantSpec act_8da4w() { return {FakeQuantKind::intx_asymmetric, -128, 127, 1.1920928955078125e-07, 0}; }
FakeQuantSpec weight_8da4w(int64_t group) { return {FakeQuantKind::intx_symmetric, -8, 7, -1.0, group}; }

// x as stored (f64 holding exact f32/bf16 values) in the case's dtype.
Tensor golden_input(const testing::GoldenCase& c, DType dtype) { return c.at("x").to(dtype); }

void check_bit_equal(const Tensor& actual, const Tensor& expected) {
  const std::vector<double> a = actual.to_vector<double>(), e = expected.to_vector<double>();
  REQUIRE(a.size() == e.size());
  int64_t mismatches = 0, first = -1;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i] != e[i] && mismatches++ == 0) first = static_cast<int64_t>(i);
  CHECK_MESSAGE(mismatches == 0, mismatches, " elements differ; first at ", first, ": ", a[first], " vs ", e[first]);
}

// The unclamped intx codes of each element, from the scalar reference with the golden's qparams.
std::vector<double> unclamped_codes(const Tensor& x, const testing::GoldenCase& c, int64_t group) {
  const std::vector<float> xs = x.to_vector<float>();
  const std::vector<double> scale = c.at("scale").to_vector<double>();
  const std::vector<int64_t> zp = c.at("zero_point").to_vector<int64_t>();
  std::vector<double> q(xs.size());
  for (size_t i = 0; i < xs.size(); ++i) {
    const size_t g = i / static_cast<size_t>(group);
    q[i] = numerics::intx_unclamped_code(xs[i], static_cast<float>(scale[g]), static_cast<int32_t>(zp[g]));
  }
  return q;
}

void check_intx_case(const std::string& name, DType dtype, const FakeQuantSpec& spec) {
  CAPTURE(name);
  const testing::GoldenCase& c = goldens().at(name);
  const Tensor x = golden_input(c, dtype);
  const int64_t cols = x.size(1), group = spec.group_size == 0 ? cols : spec.group_size;
  Tensor out = Tensor::empty(x.shape(), dtype), mask = Tensor::empty(x.shape(), DType::u8);
  backend_for(Device::cpu()).fake_quantize(x, spec, out, mask);
  check_bit_equal(out.to(DType::f64), c.at("fq"));

  // The scalar qparams equal torchao's (scale f32, zero point int32).
  const std::vector<double> golden_scale = c.at("scale").to_vector<double>();
  const std::vector<int64_t> golden_zp = c.at("zero_point").to_vector<int64_t>();
  const std::vector<double> xs = x.to_vector<double>();
  for (size_t g = 0; g < golden_scale.size(); ++g) {
    float lo = static_cast<float>(xs[g * group]), hi = lo;
    for (int64_t i = 0; i < group; ++i) {
      lo = std::min(lo, static_cast<float>(xs[g * group + i]));
      hi = std::max(hi, static_cast<float>(xs[g * group + i]));
    }
    const float eps = spec.eps < 0 ? 1.17549435e-38f : static_cast<float>(spec.eps);
    auto pick = [&](auto tag) {
      using T = decltype(tag);
      return spec.kind == FakeQuantKind::intx_symmetric
                 ? numerics::choose_qparams_symmetric<T>(lo, hi, spec.qmin, spec.qmax, eps)
                 : numerics::choose_qparams_asymmetric<T>(lo, hi, spec.qmin, spec.qmax, eps);
    };
    const auto p = dtype == DType::bf16 ? pick(bf16_t{}) : pick(float{});
    CHECK(p.scale == static_cast<float>(golden_scale[g]));
    CHECK(p.zero_point == golden_zp[g]);
  }

  // STE mask: docs/numerics.md takes qmin <= code <= qmax (inclusive). torch 2.15's clamp passes no gradient AT
  // the bounds (its backward is exclusive), so the golden differs exactly where the code lands on a bound.
  const std::vector<double> q = unclamped_codes(x, c, group);
  const std::vector<int64_t> golden_mask = c.at("mask").to_vector<int64_t>(), ours = mask.to_vector<int64_t>();
  int64_t on_bound = 0;
  for (size_t i = 0; i < q.size(); ++i) {
    const bool inside = q[i] > spec.qmin && q[i] < spec.qmax, bound = q[i] == spec.qmin || q[i] == spec.qmax;
    on_bound += bound;
    CHECK(ours[i] == (inside || bound));
    CHECK(golden_mask[i] == inside);
  }
  if (spec.kind == FakeQuantKind::intx_asymmetric) CHECK(on_bound > 0);  // the row min lands on qmin
}

}  // namespace

TEST_CASE("8da4w per-token activations equal torchao (f32 and bf16; eps, all-positive and zero rows)") {
  check_intx_case("act_8da4w_f32", DType::f32, act_8da4w());
  check_intx_case("act_8da4w_bf16", DType::bf16, act_8da4w());
}

TEST_CASE("8da4w per-group int4 weights equal torchao for every group size (ties, clamp at +8, zero groups)") {
  for (int64_t g : {32, 64, 128, 256})
    check_intx_case("weight_8da4w_g" + std::to_string(g) + "_f32", DType::f32, weight_8da4w(g));
  check_intx_case("weight_8da4w_g32_bf16", DType::bf16, weight_8da4w(32));
  // +max|w| maps to 7.5, rounds to 8 and clamps to 7; the tie -7.5 rounds to even (-8).
  const std::vector<double> fq = goldens().at("weight_8da4w_g32_f32").at("fq").to_vector<double>();
  CHECK(fq[0] == 7.0);
  CHECK(fq[10] == -8.0);
  CHECK(fq[3] == 2.0);  // 2.5 -> 2
  CHECK(fq[7] == 4.0);  // 3.5 -> 4
}

TEST_CASE("int4 embedding tables equal torchao (group 32 along embedding_dim)") {
  check_intx_case("embedding_g32_f32", DType::f32, weight_8da4w(32));
}

TEST_CASE("int4 weight-only equals torchao's Int4WeightFakeQuantizer (f32 and bf16, the 1e-6 range clamp)") {
  const FakeQuantSpec spec{FakeQuantKind::int4_weight_only, 0, 15, -1.0, 128};
  for (const auto& [name, dtype, group] : {std::tuple{"int4wo_g128_f32", DType::f32, int64_t{128}},
                                           std::tuple{"int4wo_g32_bf16", DType::bf16, int64_t{32}}}) {
    CAPTURE(name);
    const testing::GoldenCase& c = goldens().at(name);
    FakeQuantSpec s = spec;
    s.group_size = group;
    const Tensor x = golden_input(c, dtype);
    Tensor out = Tensor::empty(x.shape(), dtype), mask = Tensor::empty(x.shape(), DType::u8);
    backend_for(Device::cpu()).fake_quantize(x, s, out, mask);
    check_bit_equal(out.to(DType::f64), c.at("fq"));
    // Codes of (w - min) / scale never leave [0, 15] by more than rounding: the mask passes everything.
    for (int64_t m : mask.to_vector<int64_t>()) CHECK(m == 1);
  }
}

TEST_CASE("q4_0 and q8_0 equal ggml's reference rounding (truncation, roundf, fp16 scale, zero blocks)") {
  for (const char* name : {"q4_0", "q8_0"}) {
    CAPTURE(name);
    const testing::GoldenCase& c = goldens().at(name);
    const Tensor x = golden_input(c, DType::f32);
    const bool q4 = std::string(name) == "q4_0";
    const FakeQuantSpec spec{q4 ? FakeQuantKind::q4_0 : FakeQuantKind::q8_0, 0, 0, -1.0, 32};
    Tensor out = Tensor::empty(x.shape()), mask = Tensor::empty(x.shape(), DType::u8);
    backend_for(Device::cpu()).fake_quantize(x, spec, out, mask);
    check_bit_equal(out.to(DType::f64), c.at("fq"));
    const std::vector<float> xs = x.to_vector<float>();
    const std::vector<int64_t> codes = c.at("codes").to_vector<int64_t>();
    const std::vector<double> scales = c.at("scale").to_vector<double>();
    const std::vector<int64_t> ours_mask = mask.to_vector<int64_t>();
    const std::vector<int64_t> golden_mask = q4 ? c.at("mask").to_vector<int64_t>() : std::vector<int64_t>();
    for (size_t b = 0; b < scales.size(); ++b) {
      float amax = 0, signed_amax = 0;
      for (size_t j = 0; j < 32; ++j)
        if (amax < std::abs(xs[b * 32 + j])) amax = std::abs(xs[b * 32 + j]), signed_amax = xs[b * 32 + j];
      const numerics::GgmlBlockScale s = q4 ? numerics::q4_0_scale(signed_amax) : numerics::q8_0_scale(amax);
      CHECK(s.d_rounded == static_cast<float>(scales[b]));
      for (size_t j = 0; j < 32; ++j) {
        const size_t i = b * 32 + j;
        CHECK((q4 ? numerics::q4_0_code(xs[i], s) : numerics::q8_0_code(xs[i], s)) == codes[i]);
        CHECK(ours_mask[i] == (q4 ? golden_mask[i] : 1));
      }
    }
  }
  // The largest-magnitude element of a q4_0 block maps to code 0 exactly; its negation clamps at 15.
  const numerics::GgmlBlockScale s = numerics::q4_0_scale(-2.0f);
  CHECK(numerics::q4_0_code(-2.0f, s) == 0);
  CHECK(numerics::q4_0_code(2.0f, s) == 15);
  CHECK_FALSE(numerics::q4_0_ste_pass(2.0f, s));
}

TEST_CASE("round half to even and int4 nibble packing") {
  CHECK(numerics::round_half_even(2.5f) == 2.0f);
  CHECK(numerics::round_half_even(3.5f) == 4.0f);
  CHECK(numerics::round_half_even(-2.5f) == -2.0f);
  CHECK(numerics::round_half_even(-0.5) == 0.0);
  CHECK(numerics::round_half_even(2.5000002f) == 3.0f);
  for (int32_t lo = 0; lo < 16; ++lo)
    for (int32_t hi = 0; hi < 16; ++hi) {
      const uint8_t b = numerics::pack_nibbles(lo, hi);
      CHECK(numerics::low_nibble(b) == lo);
      CHECK(numerics::high_nibble(b) == hi);
    }
  CHECK(numerics::pack_nibbles(1, 2) == 0x21);  // element 2i in the low nibble
}

TEST_CASE("quant::fake_quantize: straight-through backward masks exactly the clamped elements") {
  // x: [2, 3, 32]; the first element of each group is pushed out of range after the scale is fixed by
  // another element, so it clamps; everything else passes the gradient unchanged.
  Tensor x = testing::random_f64({2, 3, 32}, 7).to(DType::f32);
  x.requires_grad_(true);
  const FakeQuantSpec spec = weight_8da4w(32);
  const Tensor y = quant::fake_quantize(x, spec);
  CHECK(y.shape() == x.shape());
  const Tensor g = testing::random_f64({2, 3, 32}, 8).to(DType::f32);
  y.backward(g);
  const std::vector<float> xs = x.to_vector<float>(), gs = g.to_vector<float>(), gx = x.grad().to_vector<float>();
  int64_t masked = 0;
  for (size_t r = 0; r < 6; ++r) {
    float lo = xs[r * 32], hi = lo;
    for (size_t j = 0; j < 32; ++j) lo = std::min(lo, xs[r * 32 + j]), hi = std::max(hi, xs[r * 32 + j]);
    const auto p = numerics::choose_qparams_symmetric<float>(lo, hi, -8, 7, 1.17549435e-38f);
    for (size_t j = 0; j < 32; ++j) {
      const size_t i = r * 32 + j;
      const bool pass = numerics::intx_ste_pass(xs[i], p.scale, 0, -8, 7);
      masked += !pass;
      CHECK(gx[i] == (pass ? gs[i] : 0.0f));
    }
  }
  CHECK(masked >= 1);  // the largest positive element of a group maps to +8: clamped
}

TEST_CASE("Backend::fake_quantize's vectorized loops equal the scalar reference bit for bit") {
  // Random groups, plus groups whose scale is exactly 1 so that every x.5 is a rounding tie: 8da4w weights
  // with amax 7.5 (ties 2.5 -> 2, -3.5 -> -4), per-token activations spanning [-128, 127], int4wo groups
  // spanning [0, 15], q8_0 blocks with amax 127. Also a group of zeros and one of a single repeated value.
  // The q4_0/q8_0 groups take the reference itself; they are here so that no compiler flag of the kernel's
  // files can change them either (the sign of a zero included: outputs are compared as bytes).
  const int64_t cols = 256;
  const std::vector<std::pair<FakeQuantSpec, std::vector<double>>> cases = {
      {weight_8da4w(32), {7.5, 2.5, -3.5, 0.5, -0.5, 1.5, -7.5, 6.5}},
      {weight_8da4w(128), {-7.5, 4.5, -4.5, 3.5}},
      {act_8da4w(), {-128.0, 127.0, 0.5, -0.5, 12.5, -99.5, 126.5}},
      {{FakeQuantKind::int4_weight_only, 0, 15, -1.0, 32}, {0.0, 15.0, 2.5, 3.5, 7.5, 14.5, 0.5}},
      {{FakeQuantKind::q4_0, -8, 7, -1.0, 32}, {-8.0, 2.5, -3.5, 0.5, 7.5, -0.25}},
      {{FakeQuantKind::q8_0, -127, 127, -1.0, 32}, {127.0, 2.5, -3.5, 0.5, -126.5, -0.25}},
  };
  for (DType dtype : {DType::f32, DType::bf16, DType::f16})
    for (double magnitude : {3.0, 0.02})
      for (const auto& [spec, ties] : cases) {
        CAPTURE(dtype_name(dtype));
        CAPTURE(int(spec.kind));
        CAPTURE(spec.group_size);
        CAPTURE(magnitude);
        std::vector<double> values = testing::random_f64({5, cols}, 11).to_vector<double>();
        for (double& v : values) v *= magnitude;
        const int64_t group = spec.group_size == 0 ? cols : spec.group_size;
        // Row 1: the tie values in every group; row 2: zeros; row 3: a constant.
        for (int64_t j = 0; j < cols; ++j) {
          values[size_t(cols + j)] = ties[size_t((j % group) % int64_t(ties.size()))];
          values[size_t(2 * cols + j)] = 0.0;
          values[size_t(3 * cols + j)] = 0.375;
        }
        const Tensor x = Tensor::from_vector<double>(values, {5, cols}).to(dtype);
        Tensor out = Tensor::empty(x.shape(), dtype), mask = Tensor::empty(x.shape(), DType::u8);
        backend_for(Device::cpu()).fake_quantize(x, spec, out, mask);

        Tensor ref_out = Tensor::empty(x.shape(), dtype), ref_mask = Tensor::empty(x.shape(), DType::u8);
        auto reference = [&](auto tag) {
          using T = decltype(tag);
          const T* src = static_cast<const T*>(x.data_ptr());
          for (int64_t g = 0; g < x.numel() / group; ++g)
            numerics::fake_quantize_group(src + g * group, group, spec, static_cast<T*>(ref_out.data_ptr()) + g * group,
                                          static_cast<uint8_t*>(ref_mask.data_ptr()) + g * group);
        };
        if (dtype == DType::f32)
          reference(float{});
        else if (dtype == DType::bf16)
          reference(bf16_t{});
        else
          reference(f16_t{});
        CHECK(std::memcmp(out.data_ptr(), ref_out.data_ptr(), out.nbytes()) == 0);
        check_bit_equal(out.to(DType::f64), ref_out.to(DType::f64));  // where, if the bytes differ
        CHECK(std::memcmp(mask.data_ptr(), ref_mask.data_ptr(), mask.nbytes()) == 0);
      }
  // The tie row does exercise round-half-even: 2.5 -> 2 and -3.5 -> -4, not half-up.
  const Tensor ties = Tensor::from_vector<double>({7.5, 2.5, -3.5, 0.5}, {1, 4}).to(DType::f32);
  Tensor out = Tensor::empty({1, 4}), mask = Tensor::empty({1, 4}, DType::u8);
  backend_for(Device::cpu()).fake_quantize(ties, weight_8da4w(4), out, mask);
  CHECK(out.to_vector<float>() == std::vector<float>{7.0f, 2.0f, -4.0f, 0.0f});
}

TEST_CASE("fake_quantize rejects a group size that does not divide the last dim") {
  const Tensor x = Tensor::zeros({2, 48});
  CHECK_THROWS_WITH(quant::fake_quantize(x, weight_8da4w(32)),
                    doctest::Contains("group size 32 must divide the last dim 48"));
}
