#include "ops/nn/linear.h"

#include <cmath>

#include "engine/autograd.h"
#include "engine/check.h"
#include "ops/matmul.h"

namespace qtune::nn {

Linear::Linear(const Tensor& weight, const Tensor& bias)
    : Module("Linear"),
      in_features_(weight.dim() == 2 ? weight.size(1) : 0),
      out_features_(weight.dim() == 2 ? weight.size(0) : 0),
      weight_(weight),
      bias_(bias) {
  QTUNE_CHECK(weight.dim() == 2 && in_features_ > 0 && out_features_ > 0, "Linear: the weight must be [out, in], got ",
              shape_str(weight.shape()));
  QTUNE_CHECK(!bias.defined() || bias.shape() == Shape{out_features_}, "Linear: the bias must be [", out_features_,
              "], got ", shape_str(bias.shape()));
  register_parameter("weight", &weight_);
  if (bias_.defined()) register_parameter("bias", &bias_);
}

Linear::Linear(int64_t in_features, int64_t out_features, const Options& options)
    : Module("Linear"), in_features_(in_features), out_features_(out_features) {
  QTUNE_CHECK(in_features > 0 && out_features > 0, "Linear: features must be positive, got in ", in_features, ", out ",
              out_features);
  // kaiming_uniform_ with a = sqrt(5) gives bound = sqrt(6 / ((1 + a^2) * fan_in)) = 1 / sqrt(fan_in);
  // torch draws the bias from the same range.
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
  NoGradGuard no_grad;
  const bool init = parameter_init_enabled();
  weight_ = init ? rand({out_features, in_features}, options.dtype, options.device, options.generator, -bound, bound)
                 : Tensor::empty({out_features, in_features}, options.dtype, options.device);
  register_parameter("weight", &weight_);
  if (options.bias) {
    bias_ = init ? rand({out_features}, options.dtype, options.device, options.generator, -bound, bound)
                 : Tensor::empty({out_features}, options.dtype, options.device);
    register_parameter("bias", &bias_);
  }
}

Tensor Linear::forward(const Tensor& x) { return ops::linear(x, weight_, bias_); }

}  // namespace qtune::nn
