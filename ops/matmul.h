#pragma once
// Differentiable matrix products, each one backend GEMM call per direction.
#include "engine/tensor.h"

namespace qtune::ops {

// a: [..., m, k], b: [..., k, n] (batch dims broadcast) -> [..., m, n]; 2-D b is shared by the batch.
// trans_a / trans_b use the transpose of the last two dims without copying.
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);
// x: [..., in], weight: [out, in], bias: [out] or undefined -> [..., out]
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

}  // namespace qtune::ops
