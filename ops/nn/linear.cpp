#include "ops/nn/linear.h"

#include <cmath>

#include "engine/autograd.h"
#include "engine/check.h"
#include "ops/matmul.h"

namespace qtune::nn {

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
