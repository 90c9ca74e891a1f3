#pragma once
// Differentiable fused cross-entropy (log-softmax + negative log-likelihood in one kernel).
#include <cstdint>

#include "engine/tensor.h"

namespace qtune::ops {

// logits: [N, V] or [B, T, V]; targets: i64 [N] or [B, T]. Returns the mean loss over positions
// whose target is not ignore_index, as a 0-d tensor (f32 for f32/bf16/f16 logits, f64 for f64).
// When every position is ignored the loss is 0 and the gradient is zero (never NaN). A target
// outside [0, V) other than ignore_index throws naming the target and V.
// `counted`: the number of targets that are not ignore_index when the caller already knows it (counted
// on the host with count_targets before the targets went to the GPU), which spares reading them back, a
// synchronization; -1: counted here.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index = -100, int64_t counted = -1);

// The targets that are not ignore_index (read on the host: a synchronization for GPU targets).
int64_t count_targets(const Tensor& targets, int64_t ignore_index = -100);

// The same per position, without autograd (for scoring, e.g. log-likelihoods in evaluation): the
// negative log-likelihood of each target, with the shape of `targets` (f32; f64 for f64 logits), 0 where
// the target is ignore_index. Same checks as cross_entropy.
Tensor cross_entropy_per_position(const Tensor& logits, const Tensor& targets, int64_t ignore_index = -100);

}  // namespace qtune::ops
