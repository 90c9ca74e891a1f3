#include "optim/adamw.h"

#include <cmath>

#include "engine/backend.h"
#include "engine/check.h"

namespace qtune::optim {
namespace {

void check_options(const AdamWOptions& o) {
  QTUNE_CHECK(o.beta1 >= 0.0 && o.beta1 < 1.0, "AdamW: beta1 must be in [0, 1), got ", o.beta1);
  QTUNE_CHECK(o.beta2 >= 0.0 && o.beta2 < 1.0, "AdamW: beta2 must be in [0, 1), got ", o.beta2);
  QTUNE_CHECK(std::isfinite(o.eps) && o.eps >= 0.0, "AdamW: eps must be a finite number >= 0, got ", o.eps);
  QTUNE_CHECK(std::isfinite(o.weight_decay) && o.weight_decay >= 0.0,
              "AdamW: weight_decay must be a finite number >= 0, got ", o.weight_decay);
}

}  // namespace

AdamW::AdamW(std::vector<Tensor> params, const AdamWOptions& options)
    : Optimizer(std::move(params), options.lr), options_(options) {
  check_options(options_);
  exp_avg_.resize(params_.size());
  exp_avg_sq_.resize(params_.size());
  steps_.assign(params_.size(), 0);
}

void AdamW::step() {
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    const Tensor grad = p.grad();
    if (!grad.defined()) continue;
    if (!exp_avg_[i].defined()) {
      exp_avg_[i] = Tensor::zeros(p.shape(), DType::f32, p.device());
      exp_avg_sq_[i] = Tensor::zeros(p.shape(), DType::f32, p.device());
    }
    Backend& backend = backend_for(p.device());
    if (const Tensor& master = master_of(i); master.defined())
      backend.adamw_step_master(p, master, grad.contiguous(), exp_avg_[i], exp_avg_sq_[i], lr_, options_.beta1,
                                options_.beta2, options_.eps, options_.weight_decay, steps_[i] + 1);
    else
      backend.adamw_step(p, grad.contiguous(), exp_avg_[i], exp_avg_sq_[i], lr_, options_.beta1, options_.beta2,
                         options_.eps, options_.weight_decay, steps_[i] + 1);
    ++steps_[i];
  }
  ++step_;
}

OptimizerState AdamW::state() const {
  OptimizerState s;
  s.scalars["step"] = static_cast<double>(step_);
  s.scalars["lr"] = lr_;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!exp_avg_[i].defined()) continue;
    s.tensors[state_key(i, "exp_avg")] = exp_avg_[i];
    s.tensors[state_key(i, "exp_avg_sq")] = exp_avg_sq_[i];
    s.scalars[state_key(i, "step")] = static_cast<double>(steps_[i]);
  }
  save_masters(s);
  return s;
}

void AdamW::load_state(const OptimizerState& state) {
  check_state(state, {"exp_avg", "exp_avg_sq"}, {"step"}, "AdamW");
  // A parameter has all three entries (it has been updated) or none.
  for (size_t i = 0; i < params_.size(); ++i) {
    const std::string keys[] = {state_key(i, "exp_avg"), state_key(i, "exp_avg_sq"), state_key(i, "step")};
    const bool has[] = {state.tensors.count(keys[0]) == 1, state.tensors.count(keys[1]) == 1,
                        state.scalars.count(keys[2]) == 1};
    for (int k = 0; k < 3; ++k)
      QTUNE_CHECK(has[k] == has[0], "AdamW state: parameter ", i, " has '", keys[has[0] ? 0 : k], "' but not '",
                  keys[has[0] ? k : 0], "' (an incomplete or mixed-up state)");
    if (has[2]) {
      const double steps = state.scalars.at(keys[2]);
      QTUNE_CHECK(steps >= 1 && steps == std::floor(steps), "AdamW state: '", keys[2],
                  "' must be a whole number >= 1, got ", steps);
    }
  }
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto m = state.tensors.find(state_key(i, "exp_avg"));
    if (m == state.tensors.end()) {
      exp_avg_[i] = exp_avg_sq_[i] = Tensor();
      steps_[i] = 0;
      continue;
    }
    exp_avg_[i] = restore_tensor(m->second, i);
    exp_avg_sq_[i] = restore_tensor(state.tensors.at(state_key(i, "exp_avg_sq")), i);
    steps_[i] = static_cast<int64_t>(state.scalars.at(state_key(i, "step")));
  }
  load_masters(state);
  step_ = static_cast<int64_t>(state.scalars.at("step"));
  lr_ = state.scalars.at("lr");
}

}  // namespace qtune::optim
