#include "optim/clip_grad.h"

#include <cmath>

#include "engine/backend.h"

namespace qtune::optim {

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  std::vector<Tensor> grads;
  for (const Tensor& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  // Per device, one f64 slot per gradient and one transfer to the host (the only synchronization).
  double total = 0.0;
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
    for (double v : sums.to_vector<double>()) total += v;
  }
  const double norm = std::sqrt(total);
  if (max_norm > 0.0 && std::isfinite(norm)) {
    // torch: clip_coef = max_norm / (total_norm + 1e-6) on an f32 tensor, which Python evaluates as
    // reciprocal(total_norm + 1e-6) * max_norm; clamped to 1, so grads below the limit stay as they are.
    const float coef = (1.0f / (static_cast<float>(norm) + 1e-6f)) * static_cast<float>(max_norm);
    if (coef < 1.0f) scale_grads(params, coef);
  }
  return norm;
}

void scale_grads(const std::vector<Tensor>& params, double factor) {
  for (const Tensor& p : params) {
    const Tensor g = p.grad();
    if (g.defined()) backend_for(g.device()).affine(g, factor, 0.0, g);
  }
}

}  // namespace qtune::optim
