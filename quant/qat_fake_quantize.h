#pragma once
// The differentiable fake-quantize op of QAT (docs/numerics.md §2): forward through Backend::fake_quantize,
// backward the straight-through estimator with the clamp mask (no gradient reaches the qparams).
#include "engine/numerics/intx_quant.h"
#include "engine/tensor.h"

namespace qtune::quant {

// x: [..., C] (floating) -> x's shape and dtype, quantized in groups of spec.group_size along C (0: the
// whole last dim, per token). The group size must divide C.
Tensor fake_quantize(const Tensor& x, const numerics::FakeQuantSpec& spec);

}  // namespace qtune::quant
