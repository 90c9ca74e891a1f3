#pragma once
// Differentiable activations of the Llama MLP.
#include "engine/tensor.h"

namespace qtune::ops {

// x * sigmoid(x)
Tensor silu(const Tensor& x);
// Fused silu(gate) * up (the Llama MLP's gating). gate, up: same shape, dtype and device.
Tensor swiglu(const Tensor& gate, const Tensor& up);

}  // namespace qtune::ops
