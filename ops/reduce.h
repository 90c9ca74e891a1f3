#pragma once
// Differentiable reductions. An empty `dims` reduces over every dim.
#include <vector>

#include "engine/tensor.h"

namespace qtune::ops {

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// max |x| over all elements, no gradient (used for quantization scales).
Tensor amax(const Tensor& x);

}  // namespace qtune::ops
