#pragma once
// SGD with momentum, dampening, Nesterov and (coupled, L2) weight decay, matching torch.optim.SGD:
//   g += wd * p
//   momentum: b = t == 1 ? g : momentum * b + (1 - dampening) * g;  g = nesterov ? g + momentum * b : b
//   p -= lr * g
#include "optim/optimizer.h"

namespace qtune::optim {

struct SGDOptions {
  double lr = 1e-2;
  double momentum = 0.0;
  double dampening = 0.0;
  bool nesterov = false;  // needs momentum > 0 and dampening == 0 (as torch checks)
  double weight_decay = 0.0;
};

class SGD : public Optimizer {
 public:
  SGD(std::vector<Tensor> params, const SGDOptions& options = {});
  void step() override;
  OptimizerState state() const override;  // state.<i>.momentum_buffer; scalars step, lr
  void load_state(const OptimizerState& state) override;
  const SGDOptions& options() const { return options_; }

 private:
  SGDOptions options_;
  std::vector<Tensor> momentum_buffer_;  // f32, allocated on first use
};

}  // namespace qtune::optim
