#pragma once
// Differentiable fused RMSNorm (HF LlamaRMSNorm): y = weight * x * rsqrt(mean(x^2, -1) + eps), with
// the normalization computed in f32 for reduced-precision inputs.
#include "engine/tensor.h"

namespace qtune::ops {

// x: [..., C], weight: [C] (same dtype and device as x) -> [..., C]
Tensor rmsnorm(const Tensor& x, const Tensor& weight, double eps);

}  // namespace qtune::ops
