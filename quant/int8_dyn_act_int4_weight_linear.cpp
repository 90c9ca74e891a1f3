#include "quant/int8_dyn_act_int4_weight_linear.h"

#include <utility>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/check.h"
#include "ops/elementwise.h"

namespace qtune::quant {

Int8DynActInt4WeightLinear::Int8DynActInt4WeightLinear(const Tensor& weight, const Tensor& bias,
                                                       const Int8DynActInt4Weight& scheme)
    : Int8DynActInt4WeightLinear(pack_int4(weight, weight_spec(LinearScheme{scheme})), bias, scheme) {}

Int8DynActInt4WeightLinear::Int8DynActInt4WeightLinear(PackedInt4 packed, const Tensor& bias,
                                                       const Int8DynActInt4Weight& scheme)
    : Module("Int8DynActInt4WeightLinear"),
      in_features_(packed.codes.size(1) * 2),
      out_features_(packed.codes.size(0)),
      scheme_(scheme),
      packed_(std::move(packed)) {
  check_packed_int4(packed_, scheme.group_size, false, "Int8DynActInt4WeightLinear");
  register_buffer("weight_int4", &packed_.codes);
  register_buffer("weight_scales", &packed_.scales);
  if (bias.defined()) {
    bias_ = bias.detach().to(DType::f32).contiguous();
    register_buffer("bias", &bias_);
  }
}

Tensor Int8DynActInt4WeightLinear::forward(const Tensor& x) {
  QTUNE_CHECK(x.dim() >= 1 && x.size(static_cast<int64_t>(x.dim()) - 1) == in_features_,
              "Int8DynActInt4WeightLinear: input ", shape_str(x.shape()), " must end in in_features = ", in_features_);
  NoGradGuard no_grad;
  const int64_t tokens = x.numel() / in_features_;
  // rows: [N, in]
  const Tensor rows = x.detach().contiguous().view({tokens, in_features_});
  Backend& backend = backend_for(x.device());
  const Tensor codes = Tensor::empty(rows.shape(), DType::i8, x.device());
  const Tensor scale = Tensor::empty({tokens}, DType::f32, x.device());
  const Tensor zero_point = Tensor::empty({tokens}, DType::i32, x.device());
  backend.quantize_per_token(rows, *activation_spec(LinearScheme{scheme_}), codes, scale, zero_point);
  Tensor y = Tensor::empty({tokens, out_features_}, DType::f32, x.device());
  backend.int8_int4_linear(codes, scale, zero_point, packed_.codes, packed_.scales, y);
  if (bias_.defined()) y = ops::add(y, bias_);
  Shape out_shape = x.shape();
  out_shape.back() = out_features_;
  return y.to(x.dtype()).view(out_shape);
}

}  // namespace qtune::quant
