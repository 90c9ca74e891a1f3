#include "optim/sgd.h"

#include <cmath>

#include "engine/backend.h"
#include "engine/check.h"

namespace qtune::optim {
namespace {

void check_options(const SGDOptions& o) {
  QTUNE_CHECK(std::isfinite(o.momentum) && o.momentum >= 0.0, "SGD: momentum must be a finite number >= 0, got ",
              o.momentum);
  QTUNE_CHECK(std::isfinite(o.dampening), "SGD: dampening must be a finite number, got ", o.dampening);
  QTUNE_CHECK(std::isfinite(o.weight_decay) && o.weight_decay >= 0.0,
              "SGD: weight_decay must be a finite number >= 0, got ", o.weight_decay);
  QTUNE_CHECK(!o.nesterov || (o.momentum > 0.0 && o.dampening == 0.0),
              "SGD: nesterov needs momentum > 0 and dampening 0, got momentum ", o.momentum, " and dampening ",
              o.dampening);
}

}  // namespace

SGD::SGD(std::vector<Tensor> params, const SGDOptions& options)
    : Optimizer(std::move(params), options.lr), options_(options) {
  check_options(options_);
  momentum_buffer_.resize(params_.size());
}

void SGD::step() {
  const bool has_momentum = options_.momentum != 0.0;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    const Tensor grad = p.grad();
    if (!grad.defined()) continue;
    const bool first_step = has_momentum && !momentum_buffer_[i].defined();
    // The kernel initialises a new buffer (first_step); it is kept only once that succeeded.
    const Tensor buffer = first_step ? Tensor::empty(p.shape(), DType::f32, p.device()) : momentum_buffer_[i];
    backend_for(p.device())
        .sgd_step(update_target(i), update_grad(i, grad), buffer, lr_, options_.momentum, options_.dampening,
                  options_.nesterov, options_.weight_decay, first_step);
    publish(i);
    momentum_buffer_[i] = buffer;
  }
  ++step_;
}

OptimizerState SGD::state() const {
  OptimizerState s;
  s.scalars["step"] = static_cast<double>(step_);
  s.scalars["lr"] = lr_;
  for (size_t i = 0; i < params_.size(); ++i)
    if (momentum_buffer_[i].defined()) s.tensors[state_key(i, "momentum_buffer")] = momentum_buffer_[i];
  save_masters(s);
  return s;
}

void SGD::load_state(const OptimizerState& state) {
  check_state(state, {"momentum_buffer"}, {}, "SGD");
  if (options_.momentum == 0.0)
    for (const auto& [key, t] : state.tensors)
      QTUNE_CHECK(key.ends_with(".master"), "SGD state: has momentum buffers (", key,
                  ") but this optimizer has momentum 0 (were the options changed?)");
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto b = state.tensors.find(state_key(i, "momentum_buffer"));
    momentum_buffer_[i] = b == state.tensors.end() ? Tensor() : restore_tensor(b->second, i);
  }
  load_masters(state);
  step_ = static_cast<int64_t>(state.scalars.at("step"));
  lr_ = state.scalars.at("lr");
}

}  // namespace qtune::optim
