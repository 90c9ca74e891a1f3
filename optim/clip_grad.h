#pragma once
// Gradient clipping and gradient accumulation helpers.
#include <vector>

#include "engine/tensor.h"

namespace qtune::optim {

// The L2 norm of all gradients together (accumulated in f64 over f32 partial sums), and, when it exceeds
// max_norm > 0, every gradient scaled by max_norm / (norm + 1e-6) in place -- torch.nn.utils.clip_grad_norm_.
// Parameters without a gradient are skipped. Returns the norm before clipping. max_norm <= 0 only measures.
// A non-finite norm is returned as is and nothing is scaled (the caller decides whether to skip the step).
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

// grad *= factor for every parameter that has one (e.g. 1/accumulation steps when losses were summed).
void scale_grads(const std::vector<Tensor>& params, double factor);

}  // namespace qtune::optim
