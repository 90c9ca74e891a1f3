#pragma once
// Differentiable dtype conversion.
#include "engine/tensor.h"

namespace qtune::ops {

// x converted to `dtype` with the rounding of docs/numerics.md §6 (f32 -> bf16/f16 round to nearest
// even; float -> integer truncates toward zero). Returns x itself when the dtype already matches.
// Between floating dtypes the gradient flows back cast to x's dtype; a cast to or from an integer
// dtype carries no gradient. This is Tensor::to(DType), named for symmetry with the other ops.
Tensor cast(const Tensor& x, DType dtype);

}  // namespace qtune::ops
