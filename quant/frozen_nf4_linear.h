#pragma once
// FrozenNF4Linear: a Linear whose weight is stored as NF4 and frozen (the QLoRA base layer).
#include "engine/module.h"
#include "ops/nn/linear.h"
#include "quant/nf4_tensor.h"

namespace qtune::quant {

class FrozenNF4Linear : public Module {
 public:
  // Quantizes linear's weight (f32 or bf16); its bias, if any, is shared and frozen.
  explicit FrozenNF4Linear(nn::Linear& linear);
  // weight: [out, in] (f32 or bf16), bias: [out] or undefined (shared, frozen).
  FrozenNF4Linear(const Tensor& weight, const Tensor& bias);
  // An already quantized weight (a quantized checkpoint being loaded).
  FrozenNF4Linear(const NF4Tensor& weight, const Tensor& bias);

  // x: [..., in] -> [..., out] in x's dtype
  Tensor forward(const Tensor& x) override;

  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }
  NF4Tensor weight() const;
  Tensor& bias() { return bias_; }  // undefined without bias

 private:
  int64_t in_features_, out_features_;
  // The NF4 parts as non-persistent buffers "nf4_codes", "nf4_scalers", "nf4_factors", "nf4_mean": Module::to
  // moves them, while state_dict (the HF checkpoint layout) leaves them out. Module::to(DType) would recast
  // the factors and mean, changing the NF4 numerics: cast a model before converting it, not after.
  Tensor codes_, scalers_, factors_, mean_;
  Tensor bias_;  // [out]
};

// The NF4 conversion pass: every nn::Linear below root that `filter` selects becomes a FrozenNF4Linear
// (through swap_modules). Returns how many were converted.
int64_t convert_to_nf4(Module& root, const ModuleFilter& filter);

}  // namespace qtune::quant
