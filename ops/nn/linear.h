#pragma once
// torch.nn.Linear: y = x @ weight^T + bias, weight [out, in].
#include "engine/module.h"
#include "engine/rng.h"

namespace qtune::nn {

class Linear : public Module {
 public:
  struct Options {
    bool bias = true;
    DType dtype = DType::f32;
    Device device = Device::cpu();
    Generator* generator = nullptr;  // null: the default generator
  };
  // weight and bias ~ U(-1/sqrt(in), 1/sqrt(in)): torch's kaiming_uniform_(a = sqrt(5)) and bias rule.
  Linear(int64_t in_features, int64_t out_features, const Options& options);
  Linear(int64_t in_features, int64_t out_features) : Linear(in_features, out_features, Options{}) {}
  // Over the given tensors, shared, not copied: weight [out, in], bias [out] or undefined.
  explicit Linear(const Tensor& weight, const Tensor& bias = Tensor());

  // x: [..., in] -> [..., out]
  Tensor forward(const Tensor& x) override;

  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }
  Tensor& weight() { return weight_; }
  Tensor& bias() { return bias_; }  // undefined without bias

 private:
  int64_t in_features_, out_features_;
  Tensor weight_;  // [out, in]
  Tensor bias_;    // [out]
};

}  // namespace qtune::nn
