#pragma once
// linear_nf4: a linear layer over a frozen NF4 weight (docs/numerics.md §1). The autograd node saves only the
// NF4 weight (not x, not a dense weight); the weight gets no gradient.
#include "engine/tensor.h"
#include "quant/nf4_tensor.h"

namespace qtune::quant {

// x: [..., in] (any floating dtype), weight: NF4 [out, in] -> [..., out] in x's dtype.
// y = x @ dequant(W)^T and grad_x = grad_y @ dequant(W), the weight dequantized to x's dtype a tile of
// rows at a time into one scratch buffer, one GEMM per tile: the whole dense weight never exists.
Tensor linear_nf4(const Tensor& x, const NF4Tensor& weight);

// Rows of the weight per dequantized tile: about `kNF4TileElements` elements, at least one row.
constexpr int64_t kNF4TileElements = int64_t{1} << 22;

}  // namespace qtune::quant
