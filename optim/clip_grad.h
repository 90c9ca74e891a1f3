#pragma once
// Gradient clipping and gradient accumulation helpers.
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace qtune::optim {

// The global gradient norm of one clip_grad_norm_queued call: the squared norm of every gradient, still on
// their device. value() reads them back (on a GPU the one synchronization of clipping), so a training loop
// can queue several steps and read their norms when it logs.
class GradNorm {
 public:
  GradNorm() = default;
  explicit GradNorm(std::vector<Tensor> squares) : squares_(std::move(squares)) {}
  double value() const;
  // [k] f64 per device, in order of the parameters: value() is numerics::norm_from_squares over them all.
  const std::vector<Tensor>& squares() const { return squares_; }

 private:
  std::vector<Tensor> squares_;  // [k] f64 per device, in order of the parameters
};

// torch.nn.utils.clip_grad_norm_ (docs/numerics.md, "Gradient clipping"): the L2 norm of all gradients
// together, and, when it exceeds max_norm > 0, every gradient scaled by max_norm / (norm + 1e-6) in place.
// Parameters without a gradient are skipped; max_norm <= 0 only measures; a non-finite norm scales nothing
// (the caller decides whether to skip the step). Queued on the gradients' device without waiting for it
// (gradients spread over several devices are clipped through the host). Returns the norm before clipping.
GradNorm clip_grad_norm_queued(const std::vector<Tensor>& params, double max_norm);
// The same, waiting for the norm.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

// grad *= factor for every parameter that has one (e.g. 1/accumulation steps when losses were summed).
void scale_grads(const std::vector<Tensor>& params, double factor);

}  // namespace qtune::optim
