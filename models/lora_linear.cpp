#include "models/lora_linear.h"

#include <cmath>
#include <utility>

#include "engine/autograd.h"
#include "engine/check.h"
#include "ops/cast.h"
#include "ops/dropout.h"
#include "ops/elementwise.h"
#include "ops/nn/linear.h"

namespace qtune::models {

LoRALinear::LoRALinear(ModulePtr base, int64_t in_features, int64_t out_features, const LoRAOptions& options)
    : Module("LoRALinear"),
      in_features_(in_features),
      out_features_(out_features),
      rank_(options.rank),
      alpha_(options.alpha),
      dropout_(options.dropout),
      base_(std::move(base)) {
  QTUNE_CHECK(base_ != nullptr, "LoRALinear: null base module");
  QTUNE_CHECK(rank_ > 0, "LoRALinear: rank must be positive, got ", rank_, " (hint: lora rank 8 or 16 is usual)");
  QTUNE_CHECK(std::isfinite(alpha_), "LoRALinear: alpha must be finite, got ", alpha_);
  QTUNE_CHECK(dropout_ >= 0.0 && dropout_ < 1.0, "LoRALinear: dropout must be in [0, 1), got ", dropout_);
  QTUNE_CHECK(in_features > 0 && out_features > 0, "LoRALinear: features must be positive, got in ", in_features,
              ", out ", out_features);
  // The base's tensors go on this module under their own names (`weight`, `bias`, `nf4_codes`, ...),
  // through handles that share each tensor: to(), load_state_dict() and state_dict() reach them as if
  // the base were this module, and the base's forward sees every change.
  const auto params = base_->named_parameters();
  const auto buffers = base_->named_buffers();
  const StateDict persistent = base_->state_dict();
  base_tensors_.reserve(params.size() + buffers.size());
  for (const auto& [name, t] : params) {
    base_tensors_.push_back(t);
    register_parameter(name, &base_tensors_.back(), t.requires_grad());
  }
  for (const auto& [name, t] : buffers) {
    base_tensors_.push_back(t);
    register_buffer(name, &base_tensors_.back(), persistent.count(name) > 0);
  }
  nn::Linear::Options a_options{
      .bias = false, .dtype = options.dtype, .device = options.device, .generator = options.init_generator};
  lora_A_ = std::make_shared<nn::Linear>(in_features, rank_, a_options);
  {
    SkipInitGuard skip;
    lora_B_ = std::make_shared<nn::Linear>(rank_, out_features,
                                           nn::Linear::Options{
                                               .bias = false,
                                               .dtype = options.dtype,
                                               .device = options.device,
                                           });
  }
  NoGradGuard no_grad;
  lora_b().copy_(Tensor::zeros(lora_b().shape(), options.dtype, options.device));
  register_module("lora_A", &lora_A_);
  register_module("lora_B", &lora_B_);
}

Tensor& LoRALinear::lora_a() { return static_cast<nn::Linear&>(*lora_A_).weight(); }
Tensor& LoRALinear::lora_b() { return static_cast<nn::Linear&>(*lora_B_).weight(); }

Tensor LoRALinear::forward(const Tensor& x) {
  const Tensor y = base_->forward(x);
  const Tensor h = ops::dropout(x, dropout_, is_training());
  const Tensor update = ops::scale(lora_B_->forward(lora_A_->forward(h)), scaling());
  return ops::add(y, update.dtype() == y.dtype() ? update : ops::cast(update, y.dtype()));
}

}  // namespace qtune::models
