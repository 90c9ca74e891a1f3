#pragma once
// Global-norm gradient clipping, as torch.nn.utils.clip_grad_norm_ computes it (docs/numerics.md,
// "Gradient clipping"): one function for the CPU kernel, the CUDA kernel and the host.
#include <cmath>
#include <cstdint>

#include "engine/numerics/hd.h"

namespace qtune::numerics {

// Squared norms are summed in f32 within blocks of this many elements, counted from a tensor's first element,
// and the block sums in f64 in order: a tensor cut into pieces of whole blocks (FSDP's gradient shards) gives
// the same block sums as the whole tensor, so a sharded run reproduces a one-process norm bit for bit.
inline constexpr int64_t kSquaredNormBlock = int64_t{1} << 14;

// The norm of every gradient together from their squared norms (f64, summed in order).
QTUNE_HD double norm_from_squares(const double* squares, int64_t count) {
  double total = 0.0;
  for (int64_t i = 0; i < count; ++i) total += squares[i];
  return std::sqrt(total);
}

// torch's clip_coef = max_norm / (total_norm + 1e-6) on an f32 tensor, which Python evaluates as
// reciprocal(total_norm + 1e-6) * max_norm. Gradients are scaled only when it is below 1 and the norm
// is finite; the scale then is the affine kernel's: g * coef + 0 in the gradient's accumulation type.
QTUNE_HD float clip_coefficient(double norm, double max_norm) {
  return (1.0f / (static_cast<float>(norm) + 1e-6f)) * static_cast<float>(max_norm);
}
QTUNE_HD bool clip_applies(double norm, double max_norm) {
  return max_norm > 0.0 && std::isfinite(norm) && clip_coefficient(norm, max_norm) < 1.0f;
}

}  // namespace qtune::numerics
