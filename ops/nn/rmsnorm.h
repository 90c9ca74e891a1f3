#pragma once
// HF LlamaRMSNorm: a learned per-channel scale (initialized to ones) over the RMS-normalized input.
#include "engine/module.h"

namespace qtune::nn {

class RMSNorm : public Module {
 public:
  struct Options {
    double eps = 1e-6;
    DType dtype = DType::f32;
    Device device = Device::cpu();
  };
  RMSNorm(int64_t hidden_size, const Options& options);
  explicit RMSNorm(int64_t hidden_size) : RMSNorm(hidden_size, Options{}) {}

  // x: [..., hidden_size] -> same shape
  Tensor forward(const Tensor& x) override;

  double eps() const { return eps_; }
  Tensor& weight() { return weight_; }

 private:
  double eps_;
  Tensor weight_;  // [C]
};

}  // namespace qtune::nn
