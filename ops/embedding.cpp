#include "ops/embedding.h"

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/check.h"

namespace qtune::ops {

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  QTUNE_CHECK(weight.dim() == 2, "embedding: weight ", shape_str(weight.shape()), " must be [V, C]");
  QTUNE_CHECK(ids.dtype() == DType::i64 || ids.dtype() == DType::i32, "embedding: ids must be i32 or i64, got ",
              dtype_name(ids.dtype()));
  QTUNE_CHECK(weight.device() == ids.device(), "embedding: devices differ (weight on ", weight.device().str(),
              ", ids on ", ids.device().str(), ")");
  const int64_t cols = weight.size(1);
  // flat_ids: [N]
  const Tensor flat_ids = ids.contiguous().view({ids.numel()});
  Tensor out = Tensor::empty({ids.numel(), cols}, weight.dtype(), weight.device());
  backend_for(weight.device()).embedding(weight.detach().contiguous(), flat_ids, out);
  Shape out_shape = ids.shape();
  out_shape.push_back(cols);
  out = out.view(out_shape);
  if (autograd::needs_grad({weight}))
    autograd::record("embedding", {weight}, {out},
                     [flat_ids, wshape = weight.shape(), dtype = weight.dtype(),
                      device = weight.device()](const std::vector<Tensor>& g) {
                       Tensor grad_w = Tensor::zeros(wshape, dtype, device);
                       const Tensor grad_rows = g[0].contiguous().view({flat_ids.numel(), wshape[1]});
                       backend_for(device).embedding_backward(grad_rows, flat_ids, grad_w);
                       return std::vector<Tensor>{grad_w};
                     });
  return out;
}

}  // namespace qtune::ops
