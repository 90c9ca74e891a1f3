#pragma once
// QAT's stand-in for nn::Linear: y = fq_act(x) @ fq_weight(W)^T (+ b), fake quantization with the
// straight-through estimator (quant/qat_fake_quantize.h). The weight and bias are the SAME tensors as the
// nn::Linear it was built from (no copy): optimizers and checkpoints see the usual names and objects.
#include <optional>

#include "engine/module.h"
#include "ops/nn/linear.h"
#include "quant/qat_config.h"

namespace qtune::quant {

// Fake quantization can be switched off (set_enabled) and delayed: with fake_quant_after_n_steps = N the
// module computes a plain linear until set_step(step) reports step >= N. The trainer calls set_step with
// its optimizer step count (0 before the first update) on every fake-quant module (quant::set_qat_step).
class FakeQuantizedLinear : public Module {
 public:
  FakeQuantizedLinear(nn::Linear& linear, const LinearScheme& scheme, int64_t fake_quant_after_n_steps = 0);

  // x: [..., in] -> [..., out]
  Tensor forward(const Tensor& x) override;

  void set_enabled(bool on) { enabled_ = on; }
  bool enabled() const { return enabled_; }
  void set_step(int64_t step) { step_ = step; }
  // Whether the next forward fake-quantizes: enabled and the step has reached fake_quant_after_n_steps.
  bool fake_quant_active() const { return enabled_ && step_ >= after_n_steps_; }

  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }
  const LinearScheme& scheme() const { return scheme_; }
  Tensor& weight() { return weight_; }
  Tensor& bias() { return bias_; }  // undefined without bias

 private:
  int64_t in_features_, out_features_;
  LinearScheme scheme_;
  numerics::FakeQuantSpec weight_spec_;
  std::optional<numerics::FakeQuantSpec> activation_spec_;
  int64_t after_n_steps_;
  int64_t step_ = 0;
  bool enabled_ = true;
  Tensor weight_;  // [out, in]
  Tensor bias_;    // [out]
};

}  // namespace qtune::quant
