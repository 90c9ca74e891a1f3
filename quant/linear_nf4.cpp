#include "quant/linear_nf4.h"

#include <algorithm>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/check.h"

namespace qtune::quant {
namespace {

// Calls gemm_tile(first_row, rows, tile) for each tile of the weight's rows, tile: [1, rows, in] holding
// those rows dequantized to `dtype` (the scratch buffer is reused: a tile is dead once its GEMM is queued,
// as every kernel of a device runs in order).
template <class F>
void for_each_tile(const NF4Tensor& w, DType dtype, F&& gemm_tile) {
  const int64_t out = w.shape()[0], in = w.shape()[1];
  const int64_t tile_rows = std::clamp<int64_t>(kNF4TileElements / in, 1, out);
  const Tensor scratch = Tensor::empty({tile_rows * in}, dtype, w.device());
  for (int64_t r = 0; r < out; r += tile_rows) {
    const int64_t rows = std::min(tile_rows, out - r);
    const Tensor tile = scratch.narrow(0, 0, rows * in);
    w.dequantize_range(r * in, tile);
    gemm_tile(r, rows, tile.view({1, rows, in}));
  }
}

// x2: [N, in] -> [N, out]
Tensor forward(const Tensor& x2, const NF4Tensor& w) {
  const Tensor y = Tensor::empty({x2.size(0), w.shape()[0]}, x2.dtype(), x2.device());
  Backend& be = backend_for(x2.device());
  const Tensor a = x2.unsqueeze(0);
  for_each_tile(w, x2.dtype(), [&](int64_t r, int64_t rows, const Tensor& tile) {
    be.gemm(a, false, tile, true, y.narrow(1, r, rows).unsqueeze(0), 1.0, 0.0);
  });
  return y;
}

// g: [N, out] -> [N, in]
Tensor backward(const Tensor& g, const NF4Tensor& w) {
  const Tensor gx = Tensor::empty({g.size(0), w.shape()[1]}, g.dtype(), g.device());
  Backend& be = backend_for(g.device());
  const Tensor c = gx.unsqueeze(0);
  for_each_tile(w, g.dtype(), [&](int64_t r, int64_t rows, const Tensor& tile) {
    be.gemm(g.narrow(1, r, rows).unsqueeze(0), false, tile, false, c, 1.0, r == 0 ? 0.0 : 1.0);
  });
  return gx;
}

}  // namespace

Tensor linear_nf4(const Tensor& x, const NF4Tensor& weight) {
  QTUNE_CHECK(weight.defined() && weight.shape().size() == 2, "linear_nf4: the NF4 weight must be 2-D [out, in]");
  const int64_t out = weight.shape()[0], in = weight.shape()[1];
  QTUNE_CHECK(x.dim() >= 1 && x.size(-1) == in, "linear_nf4: input ", shape_str(x.shape()), " does not match weight ",
              shape_str(weight.shape()), " ([out, in])");
  QTUNE_CHECK(x.device() == weight.device(), "linear_nf4: input on ", x.device().str(), " but the weight on ",
              weight.device().str());
  Shape out_shape = x.shape();
  out_shape.back() = out;
  Tensor y;
  {
    NoGradGuard no_grad;
    y = forward(x.detach().reshape({-1, in}).contiguous(), weight).view(out_shape);
  }
  if (autograd::needs_grad({x})) {
    const Shape x_shape = x.shape();
    autograd::record("linear_nf4", {x}, {y}, [weight, x_shape, out](const std::vector<Tensor>& g) {
      const Tensor g2 = g[0].reshape({-1, out}).contiguous();
      return std::vector<Tensor>{backward(g2, weight).view(x_shape)};
    });
  }
  return y;
}

}  // namespace qtune::quant
