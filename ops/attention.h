#pragma once
// Differentiable scaled dot-product attention with grouped-query heads (Backend::attention).
#include "engine/tensor.h"

namespace qtune::ops {

// q: [B, Tq, Hq, D]; k, v: [B, Tk, Hkv, D] with Hq % Hkv == 0 (query head h reads KV head
// h / (Hq / Hkv)). Returns [B, Tq, Hq, D]. causal: query i sees keys j <= i + (Tk - Tq), so a KV
// cache of earlier positions works. scale = 0 means 1 / sqrt(D). Any layout is accepted (copied
// to contiguous when needed). Saves q, k, v, out and the per-query log-sum-exp; backward recomputes
// the probabilities tile by tile, so no [Tq, Tk] matrix is ever stored.
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal = true,
                                    double scale = 0.0);

}  // namespace qtune::ops
