#include "quant/float8_frozen_linear.h"

#include <vector>

#include "engine/autograd.h"
#include "engine/check.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"
#include "ops/nn/linear.h"

namespace qtune::quant {
namespace {

// The CPU emulation of an fp8 GEMM operand, as Float8Linear's: cast through fp8, back to f32.
// t: [R, C] -> [R, C] f32
Tensor fp8_round_trip(const Tensor& t, const std::optional<Fp8Cast>& cast, bool pow2_scales) {
  QTUNE_CHECK(cast.has_value(),
              "Float8FrozenLinear: the recipe keeps this GEMM in high precision, but the frozen "
              "weight exists only in fp8");
  return dequantize_fp8(quantize_fp8(t, *cast, pow2_scales));
}

Fp8Tensor cast_weight(const Tensor& weight, const Float8LinearConfig& config) {
  QTUNE_CHECK(weight.dim() == 2, "Float8FrozenLinear: weight ", shape_str(weight.shape()), " is not [out, in]");
  const std::optional<Fp8Cast>& cast = float8_recipe_casts(config.recipe).output.b;
  QTUNE_CHECK(cast && cast->format == Fp8Format::e4m3, "Float8FrozenLinear: recipe ", float8_recipe_name(config.recipe),
              " does not cast the forward's weight to e4m3");
  return quantize_fp8(weight, *cast, config.pow2_scales);
}

// The same bytes seen as another dtype of the same size (u8 <-> f8_e4m3 codes, i32 <-> f32 scales).
Tensor reinterpret(const Tensor& t, DType dtype) {
  return Tensor::from_storage(t.storage(), t.shape(), t.strides(), t.offset(), dtype);
}

}  // namespace

Float8FrozenLinear::Float8FrozenLinear(nn::Linear& linear, const Float8LinearConfig& config)
    : Float8FrozenLinear(linear.weight(), linear.bias(), config) {}

Float8FrozenLinear::Float8FrozenLinear(const Tensor& weight, const Tensor& bias, const Float8LinearConfig& config)
    : Module("Float8FrozenLinear"), config_(config) {
  Fp8Tensor w = cast_weight(weight, config);
  in_features_ = weight.size(1);
  out_features_ = weight.size(0);
  codes_ = reinterpret(w.codes, DType::u8);
  scale_ = reinterpret(w.scale, DType::i32);
  register_buffer("fp8_codes", &codes_, false);
  register_buffer("fp8_scale", &scale_, false);
  if (bias.defined()) {
    QTUNE_CHECK(bias.dim() == 1 && bias.size(0) == out_features_, "Float8FrozenLinear: bias ", shape_str(bias.shape()),
                " does not match ", out_features_, " output features");
    bias_ = bias.detach();
    register_parameter("bias", &bias_, false);
  }
}

Fp8Tensor Float8FrozenLinear::weight() const {
  return {reinterpret(codes_, DType::f8_e4m3), reinterpret(scale_, DType::f32)};
}

Tensor Float8FrozenLinear::forward(const Tensor& x) {
  QTUNE_CHECK(x.dim() >= 1 && x.size(-1) == in_features_, "Float8FrozenLinear: input ", shape_str(x.shape()),
              " does not match ", in_features_, " input features");
  const Float8RecipeCasts& casts = float8_recipe_casts(config_.recipe);
  const bool pow2 = config_.pow2_scales;
  const Fp8Tensor w = weight();                              // the backward keeps these 1-byte codes, never a dense W
  const Tensor x2 = x.detach().reshape({-1, in_features_});  // [N, in]
  Tensor y;
  {
    NoGradGuard no_grad;
    QTUNE_CHECK(casts.output.a.has_value(), "Float8FrozenLinear: the recipe keeps the forward in high precision");
    y = fp8_matmul(quantize_fp8(x2, k_major_cast(*casts.output.a), pow2), w, x.dtype());
  }
  if (autograd::needs_grad({x})) {
    autograd::record("float8_frozen_linear", {x}, {y},
                     [w, casts, pow2, dtype = x.dtype(), x_shape = x.shape()](const std::vector<Tensor>& g) {
                       NoGradGuard no_grad;
                       const Tensor dy = g[0].contiguous();  // [N, out]
                       Tensor dx;
                       if (w.scale.numel() == 1) {
                         // dx [N, in] = dy [N, out] @ (W^T [in, out])^T on the 1-byte codes, transposed.
                         QTUNE_CHECK(casts.grad_input.a.has_value(), "Float8FrozenLinear: no fp8 cast for dy");
                         dx = fp8_matmul(quantize_fp8(dy, k_major_cast(*casts.grad_input.a), pow2),
                                         transpose_tensorwise(w), dtype);
                       } else {
                         // Per-row weight scales run along dx's reduction: no fp8 GEMM takes those, so the
                         // weight is dequantized for this product (the emulation of every device).
                         dx = ops::matmul(fp8_round_trip(dy, casts.grad_input.a, pow2), dequantize_fp8(w));
                       }
                       return std::vector<Tensor>{dx.to(dtype).view(x_shape)};
                     });
  }
  if (bias_.defined()) y = ops::add(y, bias_.to(y.dtype()));
  Shape out_shape = x.shape();
  out_shape.back() = out_features_;
  return y.reshape(out_shape);
}

}  // namespace qtune::quant
