#pragma once
// Differentiable, reproducible dropout on the Philox stream of engine/rng.h.
#include "engine/rng.h"
#include "engine/tensor.h"

namespace qtune::ops {

// training: y = x * keep / (1 - p) with keep_i = uniform_i >= p; not training (or p = 0): x itself.
// Reserves philox_blocks_for_uniform(numel) blocks of `gen` (the default generator when null), so
// the mask is a function of the generator state alone; backward applies the same mask to the
// gradient by re-running the kernel with the same (seed, offset). p must be in [0, 1).
Tensor dropout(const Tensor& x, double p, bool training, Generator* gen = nullptr);

}  // namespace qtune::ops
