#include "quant/frozen_nf4_linear.h"

#include <memory>

#include "engine/check.h"
#include "ops/elementwise.h"
#include "quant/linear_nf4.h"
#include "quant/module_swap.h"

namespace qtune::quant {
namespace {

int64_t linear_dim(const NF4Tensor& weight, size_t axis) {
  QTUNE_CHECK(weight.shape().size() == 2, "FrozenNF4Linear: the NF4 weight has shape ", shape_str(weight.shape()),
              "; a linear weight is [out, in]");
  return weight.shape()[axis];
}

}  // namespace

FrozenNF4Linear::FrozenNF4Linear(nn::Linear& linear) : FrozenNF4Linear(linear.weight(), linear.bias()) {}

FrozenNF4Linear::FrozenNF4Linear(const Tensor& weight, const Tensor& bias)
    : FrozenNF4Linear(NF4Tensor::quantize(weight), bias) {}

FrozenNF4Linear::FrozenNF4Linear(const NF4Tensor& weight, const Tensor& bias)
    : Module("FrozenNF4Linear"),
      in_features_(linear_dim(weight, 1)),
      out_features_(linear_dim(weight, 0)),
      codes_(weight.codes()),
      scalers_(weight.scalers()),
      factors_(weight.factors()),
      mean_(weight.mean()) {
  register_buffer("nf4_codes", &codes_, false);
  register_buffer("nf4_scalers", &scalers_, false);
  register_buffer("nf4_factors", &factors_, false);
  register_buffer("nf4_mean", &mean_, false);
  if (bias.defined()) {
    bias_ = bias.detach();
    register_parameter("bias", &bias_, false);
  }
}

NF4Tensor FrozenNF4Linear::weight() const {
  return NF4Tensor::from_parts({out_features_, in_features_}, codes_, scalers_, factors_, mean_);
}

Tensor FrozenNF4Linear::forward(const Tensor& x) {
  const Tensor y = linear_nf4(x, weight());
  return bias_.defined() ? ops::add(y, bias_.to(y.dtype())) : y;
}

int64_t convert_to_nf4(Module& root, const ModuleFilter& filter) {
  return swap_modules(
      root,
      [&](const Module& m, std::string_view fqn) { return dynamic_cast<const nn::Linear*>(&m) && filter(m, fqn); },
      [](Module& m, std::string_view) -> ModulePtr {
        return std::make_shared<FrozenNF4Linear>(static_cast<nn::Linear&>(m));
      });
}

}  // namespace qtune::quant
