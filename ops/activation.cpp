#include "ops/activation.h"

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/check.h"

namespace qtune::ops {

Tensor silu(const Tensor& x) {
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  backend_for(x.device()).unary(UnaryOp::silu, x.detach(), out);
  if (autograd::needs_grad({x}))
    autograd::record("silu", {x}, {out}, [x = x.detach()](const std::vector<Tensor>& g) {
      Tensor grad = Tensor::empty(x.shape(), x.dtype(), x.device());
      backend_for(x.device()).binary(BinaryOp::silu_grad, x, g[0], grad);
      return std::vector<Tensor>{grad};
    });
  return out;
}

Tensor swiglu(const Tensor& gate, const Tensor& up) {
  QTUNE_CHECK(gate.shape() == up.shape(), "swiglu: gate ", shape_str(gate.shape()), " and up ", shape_str(up.shape()),
              " must have the same shape");
  QTUNE_CHECK(gate.dtype() == up.dtype(), "swiglu: dtypes differ (", dtype_name(gate.dtype()), " vs ",
              dtype_name(up.dtype()), "); cast one side first");
  QTUNE_CHECK(gate.device() == up.device(), "swiglu: devices differ (", gate.device().str(), " vs ", up.device().str(),
              ")");
  const Tensor g = gate.detach().contiguous(), u = up.detach().contiguous();
  Tensor out = Tensor::empty(gate.shape(), gate.dtype(), gate.device());
  backend_for(gate.device()).swiglu(g, u, out);
  if (autograd::needs_grad({gate, up})) {
    const bool need_g = gate.requires_grad(), need_u = up.requires_grad();
    autograd::record("swiglu", {gate, up}, {out}, [g, u, need_g, need_u](const std::vector<Tensor>& grads) {
      Tensor grad_g = Tensor::empty(g.shape(), g.dtype(), g.device());
      Tensor grad_u = Tensor::empty(u.shape(), u.dtype(), u.device());
      backend_for(g.device()).swiglu_backward(g, u, grads[0].contiguous(), grad_g, grad_u);
      return std::vector<Tensor>{need_g ? grad_g : Tensor(), need_u ? grad_u : Tensor()};
    });
  }
  return out;
}

}  // namespace qtune::ops
