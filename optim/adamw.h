#pragma once
// AdamW (Loshchilov & Hutter): decoupled weight decay, bias-corrected moments, f32 state.
// Matches torch.optim.AdamW (foreach=False, amsgrad=False, maximize=False) step for step (moments to
// the bit, parameters within an ulp or two: see engine/numerics/adamw.h):
//   p -= lr * wd * p
//   m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g^2
//   p -= (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// The per-element update is one scalar QTUNE_HD function (engine/numerics/adamw.h) that the CPU and
// CUDA kernels (Backend::adamw_step) share. bf16/f16 parameters are updated in f32 and rounded back.
#include "optim/optimizer.h"

namespace qtune::optim {

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;
};

class AdamW : public Optimizer {
 public:
  AdamW(std::vector<Tensor> params, const AdamWOptions& options = {});
  void step() override;
  // Tensors state.<i>.exp_avg, state.<i>.exp_avg_sq; scalars step, lr and state.<i>.step (each parameter
  // counts its own updates for the bias corrections, as torch does: one skipped for lack of a gradient
  // falls behind the others).
  OptimizerState state() const override;
  void load_state(const OptimizerState& state) override;
  const AdamWOptions& options() const { return options_; }

 private:
  AdamWOptions options_;
  std::vector<Tensor> exp_avg_, exp_avg_sq_;  // f32, allocated on a parameter's first step
  std::vector<int64_t> steps_;                // updates of each parameter
};

}  // namespace qtune::optim
