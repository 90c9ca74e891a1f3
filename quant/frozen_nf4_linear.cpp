#include "quant/frozen_nf4_linear.h"

#include <memory>

#include "ops/elementwise.h"
#include "quant/linear_nf4.h"
#include "quant/module_swap.h"

namespace qtune::quant {

FrozenNF4Linear::FrozenNF4Linear(nn::Linear& linear)
    : Module("FrozenNF4Linear"), in_features_(linear.in_features()), out_features_(linear.out_features()) {
  const NF4Tensor w = NF4Tensor::quantize(linear.weight());
  codes_ = w.codes();
  scalers_ = w.scalers();
  factors_ = w.factors();
  mean_ = w.mean();
  register_buffer("nf4_codes", &codes_, false);
  register_buffer("nf4_scalers", &scalers_, false);
  register_buffer("nf4_factors", &factors_, false);
  register_buffer("nf4_mean", &mean_, false);
  if (linear.bias().defined()) {
    bias_ = linear.bias().detach();
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
