#include "ops/rmsnorm.h"

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/check.h"

namespace qtune::ops {

Tensor rmsnorm(const Tensor& x, const Tensor& weight, double eps) {
  QTUNE_CHECK(x.dim() >= 1 && weight.dim() == 1 && weight.size(0) == x.size(-1), "rmsnorm: input ",
              shape_str(x.shape()), " does not match weight ", shape_str(weight.shape()), " ([C] over the last dim)");
  QTUNE_CHECK(x.dtype() == weight.dtype(), "rmsnorm: input dtype ", dtype_name(x.dtype()), " differs from weight ",
              dtype_name(weight.dtype()), "; cast one side first");
  QTUNE_CHECK(x.device() == weight.device(), "rmsnorm: devices differ (", x.device().str(), " vs ",
              weight.device().str(), ")");
  QTUNE_CHECK(eps >= 0.0, "rmsnorm: eps must be non-negative, got ", eps);
  const int64_t cols = x.size(-1), rows = cols == 0 ? 0 : x.numel() / cols;
  const DType stat = x.dtype() == DType::f64 ? DType::f64 : DType::f32;
  // x_rows: [N, C]
  const Tensor x_rows = x.detach().contiguous().view({rows, cols});
  const Tensor w = weight.detach().contiguous();
  Tensor y = Tensor::empty({rows, cols}, x.dtype(), x.device());
  Tensor rstd = Tensor::empty({rows}, stat, x.device());
  backend_for(x.device()).rmsnorm(x_rows, w, eps, y, rstd);
  y = y.view(x.shape());
  if (autograd::needs_grad({x, weight})) {
    const bool need_x = x.requires_grad(), need_w = weight.requires_grad();
    autograd::record("rmsnorm", {x, weight}, {y},
                     [x_rows, w, rstd, need_x, need_w, shape = x.shape()](const std::vector<Tensor>& g) {
                       Tensor grad_x = Tensor::empty(x_rows.shape(), x_rows.dtype(), x_rows.device());
                       Tensor grad_w = Tensor::empty(w.shape(), w.dtype(), w.device());
                       backend_for(x_rows.device())
                           .rmsnorm_backward(g[0].contiguous().view(x_rows.shape()), x_rows, w, rstd, grad_x, grad_w);
                       return std::vector<Tensor>{need_x ? grad_x.view(shape) : Tensor(), need_w ? grad_w : Tensor()};
                     });
  }
  return y;
}

}  // namespace qtune::ops
