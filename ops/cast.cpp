#include "ops/cast.h"

namespace qtune::ops {

// Tensor::to already records the node (gradient = g.to(source dtype)); one implementation keeps
// the two spellings from drifting apart.
Tensor cast(const Tensor& x, DType dtype) { return x.to(dtype); }

}  // namespace qtune::ops
