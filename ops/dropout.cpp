#include "ops/dropout.h"

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/check.h"
#include "engine/numerics/philox.h"

namespace qtune::ops {

Tensor dropout(const Tensor& x, double p, bool training, Generator* gen) {
  QTUNE_CHECK(p >= 0.0 && p < 1.0, "dropout: p must be in [0, 1), got ", p);
  if (!training || p == 0.0) return x;
  QTUNE_CHECK(is_floating(x.dtype()), "dropout: needs a floating tensor, got ", dtype_name(x.dtype()));
  Generator& g = gen != nullptr ? *gen : default_generator();
  const uint64_t seed = g.seed();
  const uint64_t offset = g.reserve(numerics::philox_blocks_for_uniform(static_cast<uint64_t>(x.numel())));
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.numel() > 0) backend_for(x.device()).dropout(x.detach().contiguous(), p, seed, offset, y);
  if (autograd::needs_grad({x}))
    autograd::record("dropout", {x}, {y}, [p, seed, offset](const std::vector<Tensor>& grads) {
      const Tensor gc = grads[0].contiguous();
      Tensor dx = Tensor::empty(gc.shape(), gc.dtype(), gc.device());
      if (gc.numel() > 0) backend_for(gc.device()).dropout(gc, p, seed, offset, dx);
      return std::vector<Tensor>{dx};
    });
  return y;
}

}  // namespace qtune::ops
