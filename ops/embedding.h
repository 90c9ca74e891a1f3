#pragma once
// Differentiable embedding lookup.
#include "engine/tensor.h"

namespace qtune::ops {

// weight: [V, C], ids: [...] i32 or i64 with every id in [0, V) -> [..., C]. The gradient reaches
// weight only (rows scatter-added, so repeated ids sum).
Tensor embedding(const Tensor& weight, const Tensor& ids);

}  // namespace qtune::ops
