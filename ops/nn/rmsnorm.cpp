#include "ops/nn/rmsnorm.h"

#include "engine/check.h"
#include "ops/rmsnorm.h"

namespace qtune::nn {

RMSNorm::RMSNorm(int64_t hidden_size, const Options& options) : Module("RMSNorm"), eps_(options.eps) {
  QTUNE_CHECK(hidden_size > 0, "RMSNorm: hidden_size must be positive, got ", hidden_size);
  weight_ = Tensor::ones({hidden_size}, options.dtype, options.device);
  register_parameter("weight", &weight_);
}

Tensor RMSNorm::forward(const Tensor& x) { return ops::rmsnorm(x, weight_, eps_); }

}  // namespace qtune::nn
