#include "quant/fake_quantized_linear.h"

#include "ops/matmul.h"
#include "quant/qat_fake_quantize.h"

namespace qtune::quant {

FakeQuantizedLinear::FakeQuantizedLinear(nn::Linear& linear, const LinearScheme& scheme,
                                         int64_t fake_quant_after_n_steps)
    : Module("FakeQuantizedLinear"),
      in_features_(linear.in_features()),
      out_features_(linear.out_features()),
      scheme_(scheme),
      weight_spec_(weight_spec(scheme)),
      activation_spec_(activation_spec(scheme)),
      after_n_steps_(fake_quant_after_n_steps),
      weight_(linear.weight()),
      bias_(linear.bias()) {
  // Keep each tensor's requires_grad as it was (a frozen weight stays frozen).
  register_parameter("weight", &weight_, weight_.requires_grad());
  if (bias_.defined()) register_parameter("bias", &bias_, bias_.requires_grad());
}

Tensor FakeQuantizedLinear::forward(const Tensor& x) {
  if (!fake_quant_active()) return ops::linear(x, weight_, bias_);
  const Tensor xq = activation_spec_ ? fake_quantize(x, *activation_spec_) : x;
  return ops::linear(xq, fake_quantize(weight_, weight_spec_), bias_);
}

}  // namespace qtune::quant
