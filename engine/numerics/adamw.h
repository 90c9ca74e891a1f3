#pragma once
// One element of the AdamW and SGD updates, shared by the CPU and CUDA kernels (Backend::adamw_step,
// Backend::sgd_step) and so covered by the CPU tests on both.
//
// They repeat torch.optim's single-tensor (foreach=False) f32 arithmetic operation by operation, as
// torch 2.x's vectorized CPU kernels execute it (checked bit for bit with tools/goldens/gen_optim.py):
//  - the Python-side scalars (bias corrections, step size) are doubles, cast to f32 once where they
//    meet a tensor, as TensorIterator casts a Python scalar to the op's f32 compute type;
//  - lerp_ and add_(alpha=) are fused multiply-adds in torch's kernels, so they are fmaf here (explicit,
//    so -ffp-contract=off and nvcc's -fmad=false leave them fused); mul_, addcmul_ and addcdiv_ are not.
// One known difference: torch's f32 sqrt (MKL VML) is not correctly rounded (1 ulp off on about a fifth
// of inputs) and sqrtf is, so an AdamW parameter may differ from torch's by an ulp of its update.
#include <math.h>

#include <cmath>
#include <cstdint>

#include "engine/numerics/hd.h"

namespace qtune::numerics {

// torch's lerp (ATen/native/Lerp.h, vectorized form): one fused multiply-add from the nearer end.
QTUNE_HD float lerp(float start, float end, float weight) {
  const bool small = fabsf(weight) < 0.5f;
  return fmaf(small ? weight : weight - 1.0f, end - start, small ? start : end);
}

// The per-step scalars of AdamW, computed on the host in double exactly as torch's Python code does.
struct AdamWScalars {
  float decay;         // 1 - lr * weight_decay (1 when weight_decay is 0: the multiply is exact)
  float beta1_weight;  // 1 - beta1: exp_avg moves this far toward grad
  float beta2;
  float one_minus_beta2;
  float bias_correction2_sqrt;  // (1 - beta2^step)^0.5
  float eps;
  float neg_step_size;  // -lr / (1 - beta1^step)
};

// step: this parameter's update count, 1 for its first update.
inline AdamWScalars adamw_scalars(double lr, double beta1, double beta2, double eps, double weight_decay,
                                  int64_t step) {
  const double t = static_cast<double>(step);
  const double bias_correction1 = 1.0 - std::pow(beta1, t);
  const double bias_correction2 = 1.0 - std::pow(beta2, t);
  AdamWScalars s;
  s.decay = static_cast<float>(1.0 - lr * weight_decay);
  s.beta1_weight = static_cast<float>(1.0 - beta1);
  s.beta2 = static_cast<float>(beta2);
  s.one_minus_beta2 = static_cast<float>(1.0 - beta2);
  s.bias_correction2_sqrt = static_cast<float>(std::pow(bias_correction2, 0.5));
  s.eps = static_cast<float>(eps);
  s.neg_step_size = static_cast<float>(-(lr / bias_correction1));
  return s;
}

// torch: p.mul_(1 - lr*wd); m.lerp_(g, 1 - beta1); v.mul_(beta2).addcmul_(g, g, value=1 - beta2);
//        denom = (v.sqrt() / bc2_sqrt).add_(eps); p.addcdiv_(m, denom, value=-step_size)
QTUNE_HD void adamw_update(float& param, float grad, float& exp_avg, float& exp_avg_sq, const AdamWScalars& s) {
  param = param * s.decay;
  exp_avg = lerp(exp_avg, grad, s.beta1_weight);
  // addcmul_ computes self + (value * t1) * t2; its vectorized form fuses the final multiply-add.
  exp_avg_sq = fmaf(s.one_minus_beta2 * grad, grad, exp_avg_sq * s.beta2);
  const float denom = sqrtf(exp_avg_sq) / s.bias_correction2_sqrt + s.eps;
  param = param + s.neg_step_size * exp_avg / denom;
}

// The per-step scalars of SGD; the flags are decided in double, as torch's `!= 0` tests are.
struct SGDScalars {
  float neg_lr;
  float momentum;
  float one_minus_dampening;
  float weight_decay;
  bool has_weight_decay;
  bool has_momentum;  // momentum != 0: a momentum buffer exists
  bool nesterov;
  bool first_step;  // the buffer is initialised to the gradient instead of decayed
};

inline SGDScalars sgd_scalars(double lr, double momentum, double dampening, bool nesterov, double weight_decay,
                              bool first_step) {
  SGDScalars s;
  s.neg_lr = static_cast<float>(-lr);
  s.momentum = static_cast<float>(momentum);
  s.one_minus_dampening = static_cast<float>(1.0 - dampening);
  s.weight_decay = static_cast<float>(weight_decay);
  s.has_weight_decay = weight_decay != 0.0;
  s.has_momentum = momentum != 0.0;
  s.nesterov = nesterov;
  s.first_step = first_step;
  return s;
}

// torch: g = g.add(p, alpha=wd); b = g.clone() on the first step else b.mul_(momentum).add_(g, alpha=1 - dampening);
//        g = g.add(b, alpha=momentum) if nesterov else b; p.add_(g, alpha=-lr).
// momentum_buffer is read and written only when s.has_momentum.
QTUNE_HD void sgd_update(float& param, float grad, float& momentum_buffer, const SGDScalars& s) {
  if (s.has_weight_decay) grad = fmaf(param, s.weight_decay, grad);
  if (s.has_momentum) {
    momentum_buffer = s.first_step ? grad : fmaf(grad, s.one_minus_dampening, momentum_buffer * s.momentum);
    grad = s.nesterov ? fmaf(momentum_buffer, s.momentum, grad) : momentum_buffer;
  }
  param = fmaf(grad, s.neg_lr, param);
}

}  // namespace qtune::numerics
