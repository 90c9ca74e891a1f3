#include "quant/float8_linear.h"

#include <optional>
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

// The K-major form of an operand stored as t ([K, R]: its transpose), cast as `cast` says; `done`, the
// same t quantized as stored with `done_cast`, is reused when both casts are tensorwise of one format.
Fp8Tensor quantize_transposed(const Tensor& t, Fp8Cast cast, bool pow2_scales, const Fp8Tensor* done,
                              Fp8Cast done_cast) {
  if (done != nullptr && cast.group == ScaleGroup::tensor && done_cast.group == ScaleGroup::tensor &&
      cast.format == done_cast.format)
    return transpose_tensorwise(*done);
  return quantize_fp8(t.transpose(0, 1).contiguous(), k_major_cast(cast), pow2_scales);
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
  Fp8Tensor qx, qw;  // [N, in] and [out, in]: K-major as they are
  {
    NoGradGuard no_grad;
    qx = quantize_fp8(x2, k_major_cast(*casts.output.a), pow2_scales);
    qw = quantize_fp8(w, k_major_cast(*casts.output.b), pow2_scales);
    y = fp8_matmul(qx, qw, x.dtype());  // [N, out]
  }
  if (autograd::needs_grad({x, weight})) {
    const bool need_x = x.requires_grad(), need_w = weight.requires_grad();
    autograd::record(
        "float8_linear", {x, weight}, {y},
        [x2, w, qx, qw, casts, pow2_scales, need_x, need_w, x_shape = x.shape()](const std::vector<Tensor>& g) {
          NoGradGuard no_grad;
          const Tensor dy = g[0].contiguous();  // [N, out]
          Tensor dx, dw;
          std::optional<Fp8Tensor> qdy;  // dy cast for dx, reused by dW when the casts agree
          if (need_x) {
            // dx [N, in] = dy [N, out] @ (W^T [in, out])^T
            qdy = quantize_fp8(dy, k_major_cast(*casts.grad_input.a), pow2_scales);
            const Fp8Tensor qwt = quantize_transposed(w, *casts.grad_input.b, pow2_scales, &qw, *casts.output.b);
            dx = fp8_matmul(*qdy, qwt, x2.dtype()).view(x_shape);
          }
          if (need_w) {
            if (!casts.grad_weight.a) {
              dw = ops::matmul(dy, x2, true, false).to(w.dtype());  // high precision (rowwise_with_gw_hp)
            } else {
              // dW [out, in] = dy^T [out, N] @ (x^T [in, N])^T
              const Fp8Tensor qdyt = quantize_transposed(dy, *casts.grad_weight.a, pow2_scales, qdy ? &*qdy : nullptr,
                                                         *casts.grad_input.a);
              const Fp8Tensor qxt = quantize_transposed(x2, *casts.grad_weight.b, pow2_scales, &qx, *casts.output.a);
              dw = fp8_matmul(qdyt, qxt, w.dtype());
            }
          }
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
