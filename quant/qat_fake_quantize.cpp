#include "quant/qat_fake_quantize.h"

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/check.h"

namespace qtune::quant {

Tensor fake_quantize(const Tensor& x, const numerics::FakeQuantSpec& spec) {
  QTUNE_CHECK(x.dim() >= 1 && is_floating(x.dtype()), "fake_quantize: x ", dtype_name(x.dtype()), " ",
              shape_str(x.shape()), " must be a floating tensor with at least one dim");
  const int64_t cols = x.size(static_cast<int64_t>(x.dim()) - 1);
  // rows: [N, C]
  const Tensor rows = x.detach().contiguous().view({x.numel() / cols, cols});
  Tensor out = Tensor::empty(rows.shape(), x.dtype(), x.device());
  const Tensor mask = Tensor::empty(rows.shape(), DType::u8, x.device());
  Backend& backend = backend_for(x.device());
  backend.fake_quantize(rows, spec, out, mask);
  out = out.view(x.shape());
  if (autograd::needs_grad({x}))
    autograd::record("fake_quantize", {x}, {out}, [mask, &backend](const std::vector<Tensor>& g) {
      const Tensor grad = g[0].contiguous().view(mask.shape());
      Tensor grad_x = Tensor::empty(mask.shape(), grad.dtype(), grad.device());
      backend.fake_quantize_backward(grad, mask, grad_x);
      return std::vector<Tensor>{grad_x.view(g[0].shape())};
    });
  return out;
}

}  // namespace qtune::quant
