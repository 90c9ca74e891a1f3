#include "optim/clip_grad.h"

#include <vector>

#include "engine/backend.h"
#include "engine/numerics/clip.h"

namespace qtune::optim {

double GradNorm::value() const {
  std::vector<double> all;
  for (const Tensor& s : squares_)
    for (double v : s.to_vector<double>()) all.push_back(v);
  return numerics::norm_from_squares(all.data(), static_cast<int64_t>(all.size()));
}

GradNorm clip_grad_norm_queued(const std::vector<Tensor>& params, double max_norm) {
  std::vector<Tensor> grads;
  for (const Tensor& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  // Per device, one f64 slot per gradient, written where the gradients live.
  std::vector<Tensor> squares;
  std::vector<bool> done(grads.size(), false);
  for (size_t first = 0; first < grads.size(); ++first) {
    if (done[first]) continue;
    const Device device = grads[first].device();
    std::vector<size_t> members;
    for (size_t i = first; i < grads.size(); ++i) {
      if (done[i] || grads[i].device() != device) continue;
      members.push_back(i);
      done[i] = true;
    }
    Backend& backend = backend_for(device);
    const Tensor sums = Tensor::empty({static_cast<int64_t>(members.size())}, DType::f64, device);
    for (size_t k = 0; k < members.size(); ++k)
      backend.squared_norm(grads[members[k]].contiguous(), sums.narrow(0, static_cast<int64_t>(k), 1));
    squares.push_back(sums);
  }
  GradNorm norm(squares);
  if (squares.size() == 1) {
    // Each gradient is clipped by a kernel that reads the squared norms itself: nothing waits.
    Backend& backend = backend_for(squares[0].device());
    for (const Tensor& g : grads) backend.clip_by_norm(squares[0], max_norm, g);
  } else if (squares.size() > 1) {
    const double value = norm.value();
    if (numerics::clip_applies(value, max_norm)) scale_grads(params, numerics::clip_coefficient(value, max_norm));
  }
  return norm;
}

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  return clip_grad_norm_queued(params, max_norm).value();
}

void scale_grads(const std::vector<Tensor>& params, double factor) {
  for (const Tensor& p : params) {
    const Tensor g = p.grad();
    if (g.defined()) backend_for(g.device()).affine(g, factor, 0.0, g);
  }
}

}  // namespace qtune::optim
