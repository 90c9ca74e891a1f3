#include "ops/reduce.h"

#include "engine/autograd.h"
#include "engine/backend.h"
#include "ops/elementwise.h"

namespace qtune::ops {
namespace {

// The keepdim shape of reducing `dims` of `shape` (all dims when empty), and the result shape.
std::pair<Shape, Shape> reduced_shapes(const Shape& shape, const std::vector<int64_t>& dims, bool keepdim) {
  std::vector<bool> reduce(shape.size(), dims.empty());
  for (int64_t d : dims) reduce[static_cast<size_t>(normalize_dim(d, shape.size()))] = true;
  Shape kept, result;
  for (size_t i = 0; i < shape.size(); ++i) {
    kept.push_back(reduce[i] ? 1 : shape[i]);
    if (!reduce[i] || keepdim) result.push_back(kept.back());
  }
  return {kept, result};
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  auto [kept, result] = reduced_shapes(x.shape(), dims, keepdim);
  Tensor out = Tensor::empty(kept, x.dtype(), x.device());
  backend_for(x.device()).reduce(ReduceOp::sum, x, out);
  out = out.view(result);
  if (autograd::needs_grad({x}))
    autograd::record("sum", {x}, {out}, [kept = kept, in_shape = x.shape()](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{g[0].reshape(kept).expand(in_shape).contiguous()};
    });
  return out;
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  auto [kept, result] = reduced_shapes(x.shape(), dims, keepdim);
  const int64_t count = numel_of(kept) == 0 ? 0 : x.numel() / numel_of(kept);
  return scale(sum(x, dims, keepdim), count == 0 ? 0.0 : 1.0 / static_cast<double>(count));
}

Tensor amax(const Tensor& x) {
  Tensor out = Tensor::empty(Shape(x.dim(), 1), x.dtype(), x.device());
  backend_for(x.device()).reduce(ReduceOp::amax, x, out);
  return out.view({});
}

}  // namespace qtune::ops
