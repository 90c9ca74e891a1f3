#pragma once
// Activation checkpointing: run a function without saving its intermediate tensors, and run it
// again during backward to get them back. Trades one extra forward for the activation memory.
#include <functional>
#include <vector>

#include "engine/tensor.h"

namespace qtune {

using CheckpointFn = std::function<std::vector<Tensor>(const std::vector<Tensor>& inputs)>;

// Returns fn(inputs). Only `inputs` are saved; parameters that fn reads (captured by the closure)
// receive their gradients during the recomputation. A captured non-leaf tensor that requires grad
// (a cast weight) works while only checkpointed code reads it; when code outside reads it too, pass
// it in `inputs`, because the outer backward may free its graph before the recomputation runs. The default generator's
// state is restored before recomputing, so dropout inside fn draws the same mask twice.
std::vector<Tensor> checkpoint(const CheckpointFn& fn, const std::vector<Tensor>& inputs);

}  // namespace qtune
