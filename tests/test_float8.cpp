// Float8 training (docs/numerics.md §3): the scales and fp8 operands of each recipe against torchao 0.18.0
// (tests/golden/float8.json, tools/goldens/gen_float8.py), the three GEMMs against an exact f64
// reference within the bound the formats' precision gives, and the conversion pass.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/check.h"
#include "engine/numerics/fp8.h"
#include "ops/nn/linear.h"
#include "quant/float8.h"
#include "tests/testing.h"

using namespace qtune;
using namespace qtune::quant;

namespace {

constexpr Float8Recipe kRecipes[] = {Float8Recipe::tensorwise, Float8Recipe::rowwise, Float8Recipe::rowwise_with_gw_hp};

std::vector<double> values(const Tensor& t) { return t.to_vector<double>(); }

// A [rows, cols] f32 matrix whose rows and columns span several binades, so per-row, per-column and
// per-tensor scales all differ (and small entries reach fp8's subnormals under a tensorwise scale).
Tensor spread(int64_t rows, int64_t cols, uint64_t seed) {
  std::vector<double> v = values(testing::random_f64({rows, cols}, seed));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) v[static_cast<size_t>(r * cols + c)] *= std::ldexp(1.3, (r % 9) - 4 + (c % 3));
  }
  return Tensor::from_doubles(v, {rows, cols}, DType::f32);
}

// Worst-case error of one element of a GEMM whose operand was quantized with `cast`: relative u (half
// an ulp: 2^-4 for e4m3's 3 mantissa bits, 2^-3 for e5m2's 2) in the normal range, plus an absolute
// sigma (half the smallest subnormal, 2^-10 or 2^-17, divided by the smallest scale of the operand) in
// the subnormal range. 2^-22 covers the f32 roundings of x * scale and of codes / scale. A
// high-precision operand has u = 2^-24 (its f32 rounding) and sigma = 0.
struct OperandError {
  double u = 0x1p-24, sigma = 0.0;
};

OperandError operand_error(const Tensor& x, const std::optional<Fp8Cast>& cast, bool pow2) {
  if (!cast) return {};
  const bool e4m3 = cast->format == Fp8Format::e4m3;
  const std::vector<double> scales = values(quantize_fp8(x, *cast, pow2).scale);
  const double min_scale = *std::min_element(scales.begin(), scales.end());
  return {(e4m3 ? 0x1p-4 : 0x1p-3) + 0x1p-22, (e4m3 ? 0x1p-10 : 0x1p-17) / min_scale};
}

// got: [m, n] from a GEMM of a: [m, k] and b: [k, n] (exact f64 values) quantized with errors ea, eb.
// With |a' - a| <= ua |a| + sa and |b' - b| <= ub |b| + sb per element and an f32 accumulation
// (k 2^-24 relative of sum |a'||b'|):
//   |c' - c| <= (ua + ub + ua ub + k 2^-24 (1+ua)(1+ub)) sum|a||b| + sa (1+ub) sum|b| + sb (1+ua) sum|a| + k sa sb.
// Returns the worst |c' - c| / bound (<= 1 passes) and the worst error relative to max |c|.
struct BoundCheck {
  double worst_ratio = 0.0, relative_error = 0.0;
};

BoundCheck check_gemm_bound(const Tensor& got, const Tensor& a, const Tensor& b, OperandError ea, OperandError eb) {
  const int64_t m = a.size(0), k = a.size(1), n = b.size(1);
  const std::vector<double> av = values(a), bv = values(b), cv = values(got);
  const double rel = ea.u + eb.u + ea.u * eb.u + static_cast<double>(k) * 0x1p-24 * (1 + ea.u) * (1 + eb.u);
  BoundCheck out;
  double max_ref = 0.0, max_err = 0.0;
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double ref = 0.0, abs_ab = 0.0, abs_a = 0.0, abs_b = 0.0;
      for (int64_t p = 0; p < k; ++p) {
        const double x = av[static_cast<size_t>(i * k + p)], y = bv[static_cast<size_t>(p * n + j)];
        ref += x * y;
        abs_ab += std::fabs(x * y);
        abs_a += std::fabs(x);
        abs_b += std::fabs(y);
      }
      const double bound = rel * abs_ab + ea.sigma * (1 + eb.u) * abs_b + eb.sigma * (1 + ea.u) * abs_a +
                           static_cast<double>(k) * ea.sigma * eb.sigma;
      const double err = std::fabs(cv[static_cast<size_t>(i * n + j)] - ref);
      out.worst_ratio = std::max(out.worst_ratio, err / bound);
      max_ref = std::max(max_ref, std::fabs(ref));
      max_err = std::max(max_err, err);
    }
  }
  out.relative_error = max_err / max_ref;
  return out;
}

Tensor transposed(const Tensor& t) { return t.transpose(0, 1).contiguous(); }

}  // namespace

TEST_CASE("scales and fp8 codes of every recipe's six GEMM operands equal torchao's bit for bit") {
  const auto cases = testing::load_golden("float8.json");
  for (Float8Recipe recipe : kRecipes) {
    const std::string name(float8_recipe_name(recipe));
    CAPTURE(name);
    const testing::GoldenCase& g = cases.at(name);
    const Tensor x = g.at("x").to(DType::f32), w = g.at("w").to(DType::f32), dy = g.at("dy").to(DType::f32);
    const Float8RecipeCasts& casts = float8_recipe_casts(recipe);
    const bool pow2 = Float8LinearConfig::from_recipe(recipe).pow2_scales;
    const struct {
      const char* key;
      Tensor operand;
      std::optional<Fp8Cast> cast;
    } operands[] = {{"output.x", x, casts.output.a},
                    {"output.w", w, casts.output.b},
                    {"grad_input.dy", dy, casts.grad_input.a},
                    {"grad_input.w", w, casts.grad_input.b},
                    {"grad_weight.dy", dy, casts.grad_weight.a},
                    {"grad_weight.x", x, casts.grad_weight.b}};
    int checked = 0;
    for (const auto& op : operands) {
      CAPTURE(op.key);
      const bool in_golden = g.count(std::string(op.key) + ".scale") != 0;
      REQUIRE(in_golden == op.cast.has_value());  // torchao's high-precision operands are ours
      if (!op.cast) continue;
      const Fp8Tensor q = quantize_fp8(op.operand, *op.cast, pow2);
      const Tensor want_scale = g.at(std::string(op.key) + ".scale");
      REQUIRE(q.scale.shape() == want_scale.shape());
      CHECK(values(q.scale) == values(want_scale));
      const std::vector<double> want_codes = values(g.at(std::string(op.key) + ".codes"));
      std::vector<double> got_codes;
      const auto* p = static_cast<const uint8_t*>(q.codes.data_ptr());
      for (int64_t i = 0; i < q.codes.numel(); ++i) got_codes.push_back(p[i]);
      CHECK(got_codes == want_codes);
      ++checked;
    }
    CHECK(checked == (recipe == Float8Recipe::rowwise_with_gw_hp ? 4 : 6));
  }
}

TEST_CASE("float8_linear's y, dx and dW equal torchao's emulated Float8Linear up to f32 summation order") {
  const auto cases = testing::load_golden("float8.json");
  for (Float8Recipe recipe : kRecipes) {
    const std::string name(float8_recipe_name(recipe));
    CAPTURE(name);
    const testing::GoldenCase& g = cases.at(name);
    Tensor x = g.at("x").to(DType::f32), w = g.at("w").to(DType::f32);
    x.requires_grad_(true);
    w.requires_grad_(true);
    const Tensor y = float8_linear(x, w, Tensor(), recipe, Float8LinearConfig::from_recipe(recipe).pow2_scales);
    autograd::backward({y}, {g.at("dy").to(DType::f32)});
    // Both sides multiply the same dequantized operands in f32; only the order of the sums differs.
    for (const auto& [got, key] : {std::pair{y, "y"}, std::pair{x.grad(), "dx"}, std::pair{w.grad(), "dw"}}) {
      CAPTURE(key);
      const Tensor want = g.at(key);
      const auto wv = values(want);
      double max_abs = 0.0;
      for (double v : wv) max_abs = std::max(max_abs, std::fabs(v));
      QTUNE_CHECK_CLOSE(got.to(DType::f64), want, 1e-5, 1e-6 * max_abs);
    }
  }
}

TEST_CASE("the three GEMMs stay within the error bound of fp8 precision and really are quantized") {
  const int64_t n = 48, in = 32, out = 16;
  const Tensor x0 = spread(n, in, 1), w0 = spread(out, in, 2), dy = spread(n, out, 3);
  for (Float8Recipe recipe : kRecipes) {
    for (bool pow2 : {false, true}) {
      CAPTURE(float8_recipe_name(recipe));
      CAPTURE(pow2);
      const Float8RecipeCasts& casts = float8_recipe_casts(recipe);
      Tensor x = x0.detach(), w = w0.detach();
      x.requires_grad_(true);
      w.requires_grad_(true);
      const Tensor y = float8_linear(x.view({2, 24, in}), w, Tensor(), recipe, pow2);
      REQUIRE(y.shape() == Shape{2, 24, out});
      autograd::backward({y}, {dy.view({2, 24, out})});
      // y = x W^T, dx = dy W, dW = dy^T x with the operands each GEMM casts.
      const BoundCheck fwd =
          check_gemm_bound(y.view({n, out}), x0, transposed(w0), operand_error(x0, casts.output.a, pow2),
                           operand_error(w0, casts.output.b, pow2));
      const BoundCheck dgrad = check_gemm_bound(x.grad(), dy, w0, operand_error(dy, casts.grad_input.a, pow2),
                                                operand_error(w0, casts.grad_input.b, pow2));
      const BoundCheck wgrad =
          check_gemm_bound(w.grad(), transposed(dy), x0, operand_error(dy, casts.grad_weight.a, pow2),
                           operand_error(x0, casts.grad_weight.b, pow2));
      CHECK(fwd.worst_ratio <= 1.0);
      CHECK(dgrad.worst_ratio <= 1.0);
      CHECK(wgrad.worst_ratio <= 1.0);
      // Not the f32 GEMM in disguise: fp8 leaves errors far above f32 rounding, except the
      // high-precision weight gradient.
      CHECK(fwd.relative_error > 1e-3);
      CHECK(dgrad.relative_error > 1e-3);
      if (recipe == Float8Recipe::rowwise_with_gw_hp) {
        CHECK(wgrad.relative_error < 1e-5);
      } else {
        CHECK(wgrad.relative_error > 1e-3);
      }
    }
  }
}

TEST_CASE("recipe names parse, and an unknown one lists the valid names") {
  for (Float8Recipe r : kRecipes) CHECK(parse_float8_recipe(float8_recipe_name(r)) == r);
  CHECK_THROWS_WITH_AS(parse_float8_recipe("rowwise_hp"),
                       doctest::Contains("'rowwise_hp' (valid: tensorwise, rowwise, rowwise_with_gw_hp)"), Error);
  CHECK_FALSE(Float8LinearConfig::from_recipe(Float8Recipe::tensorwise).pow2_scales);
  CHECK(Float8LinearConfig::from_recipe(Float8Recipe::rowwise).pow2_scales);
  CHECK(Float8LinearConfig::from_recipe(Float8Recipe::rowwise_with_gw_hp).pow2_scales);
}

namespace {

class Net : public Module {
 public:
  Net() : Module("Net") {
    register_module("proj", &proj);
    register_module("odd", &odd);
    register_module("lm_head", &lm_head);
  }
  ModulePtr proj = std::make_shared<nn::Linear>(32, 16);
  ModulePtr odd = std::make_shared<nn::Linear>(32, 24);  // 24 is not a multiple of 16
  ModulePtr lm_head = std::make_shared<nn::Linear>(16, 64);
};

}  // namespace

TEST_CASE("convert_to_float8 swaps eligible linears, keeps their tensors and skips the default exclusions") {
  Net net;
  const Tensor weight = static_cast<nn::Linear&>(*net.proj).weight();
  const Tensor x = spread(4, 32, 7);
  const Tensor before = net.proj->forward(x);
  const auto keys_before = net.state_dict();
  CHECK(convert_to_float8(net, Float8LinearConfig::from_recipe(Float8Recipe::rowwise)) == 1);
  CHECK(net.proj->type_name() == "Float8Linear");
  CHECK(net.odd->type_name() == "Linear");
  CHECK(net.lm_head->type_name() == "Linear");
  auto& f8 = static_cast<Float8Linear&>(*net.proj);
  CHECK(f8.weight().data_ptr() == weight.data_ptr());  // the same tensor: optimizer state carries over
  CHECK(f8.weight().requires_grad());
  CHECK(f8.recipe() == Float8Recipe::rowwise);
  CHECK(f8.pow2_scales());
  const auto keys_after = net.state_dict();
  CHECK(keys_after.size() == keys_before.size());
  for (const auto& [k, v] : keys_before) CHECK(keys_after.count(k) == 1);
  // The bias is added in high precision after the fp8 GEMM.
  const Tensor after = net.proj->forward(x);
  CHECK(testing::closeness(after, before, 0.1, 0.05) <= 1.0);
  CHECK(testing::closeness(after, before, 1e-6, 1e-7) > 1.0);
  CHECK(testing::closeness(after, float8_linear(x, f8.weight(), f8.bias(), Float8Recipe::rowwise, true), 0, 0) <= 1.0);
  // Converting again finds nothing: a Float8Linear is not a Linear.
  CHECK(convert_to_float8(net, Float8LinearConfig{}) == 0);
}

TEST_CASE("forcing an excluded linear into float8 is an error naming the layer and the rule") {
  Net net;
  auto select = [](const char* fqn) { return [fqn](const Module&, std::string_view n) { return n == fqn; }; };
  CHECK_THROWS_WITH_AS(convert_to_float8(net, {}, select("odd")),
                       doctest::Contains("'odd' (Linear 32 -> 24): fp8 GEMMs need in and out features that are "
                                         "multiples of 16"),
                       Error);
  CHECK_THROWS_WITH_AS(convert_to_float8(net, {}, select("lm_head")),
                       doctest::Contains("'lm_head' (Linear 16 -> 64): the output head stays in high precision"),
                       Error);
  CHECK(net.odd->type_name() == "Linear");
  CHECK(convert_to_float8(net, {}, select("proj")) == 1);
}

TEST_CASE("float8_linear rejects mismatched shapes and dtypes with the shapes in the message") {
  const Tensor x = Tensor::zeros({4, 32}), w = Tensor::zeros({16, 32});
  CHECK_THROWS_WITH_AS(float8_linear(x, Tensor::zeros({16, 24}), Tensor(), Float8Recipe::tensorwise, false),
                       doctest::Contains("input [4, 32] does not match weight [16, 24]"), Error);
  CHECK_THROWS_WITH_AS(float8_linear(x.to(DType::bf16), w, Tensor(), Float8Recipe::tensorwise, false),
                       doctest::Contains("input dtype bf16 differs from weight f32"), Error);
  CHECK_THROWS_WITH_AS(quantize_fp8(Tensor::zeros({2, 3, 4}), {Fp8Format::e4m3, ScaleGroup::row}, false),
                       doctest::Contains("[2, 3, 4]"), Error);
}

TEST_CASE("bf16 activations: float8_linear returns bf16 and matches the f32 result rounded") {
  const Tensor x = spread(8, 32, 11).to(DType::bf16), w = spread(16, 32, 12).to(DType::bf16);
  const Tensor y16 = float8_linear(x, w, Tensor(), Float8Recipe::rowwise, true);
  CHECK(y16.dtype() == DType::bf16);
  const Tensor y32 = float8_linear(x.to(DType::f32), w.to(DType::f32), Tensor(), Float8Recipe::rowwise, true);
  CHECK(values(y16) == values(y32.to(DType::bf16)));
}
