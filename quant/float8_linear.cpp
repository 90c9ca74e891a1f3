#include "quant/float8_linear.h"

#include <vector>

#include "engine/autograd.h"
#include "engine/check.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"
#include "ops/nn/linear.h"

namespace qtune::quant {
namespace {

constexpr Fp8Cast kE4m3Tensor{Fp8Format::e4m3, ScaleGroup::tensor};
constexpr Fp8Cast kE5m2Tensor{Fp8Format::e5m2, ScaleGroup::tensor};
constexpr Fp8Cast kE4m3Row{Fp8Format::e4m3, ScaleGroup::row};
constexpr Fp8Cast kE4m3Column{Fp8Format::e4m3, ScaleGroup::column};

// a: [m, k] (or [k, m] when trans_a), b: [k, n] ([n, k] when trans_b), each cast as `casts` says, then
// multiplied with f32 accumulation; -> [m, n] in `out_dtype`. The scale groups in the recipe table are
// along each operand's reduction dim.
Tensor float8_gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Float8GemmCasts& casts,
                   bool pow2_scales, DType out_dtype) {
  QTUNE_CHECK(casts.a.has_value() == casts.b.has_value(), "float8 GEMM: mixed fp8 and high-precision operands");
  if (!casts.a) return ops::matmul(a, b, trans_a, trans_b).to(out_dtype);
  const Tensor qa = dequantize_fp8(quantize_fp8(a, *casts.a, pow2_scales));
  const Tensor qb = dequantize_fp8(quantize_fp8(b, *casts.b, pow2_scales));
  return ops::matmul(qa, qb, trans_a, trans_b).to(out_dtype);
}

}  // namespace

const Float8RecipeCasts& float8_recipe_casts(Float8Recipe recipe) {
  // torchao's Float8LinearConfig recipes: tensorwise keeps gradients in e5m2 for their range; the rowwise
  // recipes keep e4m3 everywhere and rely on per-row scales for range.
  static const Float8RecipeCasts tensorwise{
      {kE4m3Tensor, kE4m3Tensor}, {kE5m2Tensor, kE4m3Tensor}, {kE5m2Tensor, kE4m3Tensor}};
  static const Float8RecipeCasts rowwise{{kE4m3Row, kE4m3Row}, {kE4m3Row, kE4m3Column}, {kE4m3Column, kE4m3Column}};
  static const Float8RecipeCasts rowwise_with_gw_hp{
      {kE4m3Row, kE4m3Row}, {kE4m3Row, kE4m3Tensor}, {std::nullopt, std::nullopt}};
  switch (recipe) {
    case Float8Recipe::tensorwise:
      return tensorwise;
    case Float8Recipe::rowwise:
      return rowwise;
    case Float8Recipe::rowwise_with_gw_hp:
      return rowwise_with_gw_hp;
  }
  QTUNE_FAIL("float8: unknown recipe ", static_cast<int>(recipe));
}

Tensor float8_linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Float8Recipe recipe, bool pow2_scales) {
  QTUNE_CHECK(weight.dim() == 2 && x.dim() >= 1 && x.size(-1) == weight.size(1), "float8_linear: input ",
              shape_str(x.shape()), " does not match weight ", shape_str(weight.shape()), " ([out, in])");
  QTUNE_CHECK(x.dtype() == weight.dtype(), "float8_linear: input dtype ", dtype_name(x.dtype()),
              " differs from weight ", dtype_name(weight.dtype()), "; cast one side first");
  const Float8RecipeCasts& casts = float8_recipe_casts(recipe);
  const int64_t in = weight.size(1), out_features = weight.size(0);
  const Tensor x2 = x.detach().reshape({-1, in}), w = weight.detach();  // x2: [N, in]
  Tensor y;
  {
    NoGradGuard no_grad;
    y = float8_gemm(x2, false, w, true, casts.output, pow2_scales, x.dtype());  // [N, out]
  }
  if (autograd::needs_grad({x, weight})) {
    const bool need_x = x.requires_grad(), need_w = weight.requires_grad();
    autograd::record("float8_linear", {x, weight}, {y},
                     [x2, w, casts, pow2_scales, need_x, need_w, x_shape = x.shape()](const std::vector<Tensor>& g) {
                       const Tensor dy = g[0].contiguous();  // [N, out]
                       Tensor dx, dw;
                       if (need_x) {
                         dx = float8_gemm(dy, false, w, false, casts.grad_input, pow2_scales, x2.dtype()).view(x_shape);
                       }
                       if (need_w) dw = float8_gemm(dy, true, x2, false, casts.grad_weight, pow2_scales, w.dtype());
                       return std::vector<Tensor>{dx, dw};
                     });
  }
  if (bias.defined()) {
    QTUNE_CHECK(bias.dim() == 1 && bias.size(0) == out_features, "float8_linear: bias ", shape_str(bias.shape()),
                " does not match ", out_features, " output features");
    y = ops::add(y, bias);
  }
  Shape out_shape = x.shape();
  out_shape.back() = out_features;
  return y.reshape(out_shape);
}

Float8Linear::Float8Linear(nn::Linear& source, Float8Recipe recipe, bool pow2_scales)
    : Module("Float8Linear"),
      in_features_(source.in_features()),
      out_features_(source.out_features()),
      recipe_(recipe),
      pow2_scales_(pow2_scales),
      weight_(source.weight()),
      bias_(source.bias()) {
  register_parameter("weight", &weight_, weight_.requires_grad());
  if (bias_.defined()) register_parameter("bias", &bias_, bias_.requires_grad());
}

Tensor Float8Linear::forward(const Tensor& x) { return float8_linear(x, weight_, bias_, recipe_, pow2_scales_); }

}  // namespace qtune::quant
