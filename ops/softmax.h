#pragma once
// Differentiable softmax and log-softmax along one dim (numerically stable: the max is subtracted).
#include "engine/tensor.h"

namespace qtune::ops {

Tensor softmax(const Tensor& x, int64_t dim = -1);
Tensor log_softmax(const Tensor& x, int64_t dim = -1);

}  // namespace qtune::ops
