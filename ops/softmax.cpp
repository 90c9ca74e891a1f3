#include "ops/softmax.h"

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/check.h"

namespace qtune::ops {
namespace {

// The kernels work on [N, C] rows of the last dim; any other dim is moved last through a
// (differentiable) transpose, so its backward is the transpose of the last-dim rule.
Tensor softmax_last(const Tensor& x, bool log) {
  const char* name = log ? "log_softmax" : "softmax";
  QTUNE_CHECK(is_floating(x.dtype()), name, ": needs a floating tensor, got ", dtype_name(x.dtype()));
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.numel() == 0) return y;
  const int64_t cols = x.dim() == 0 ? 1 : x.size(-1);
  Backend& backend = backend_for(x.device());
  const Tensor rows = x.detach().contiguous().view({-1, cols});
  const Tensor y_rows = y.view({-1, cols});
  if (log)
    backend.log_softmax(rows, y_rows);
  else
    backend.softmax(rows, y_rows);
  if (autograd::needs_grad({x}))
    autograd::record(name, {x}, {y}, [y_rows = y_rows.detach(), log, shape = x.shape()](const std::vector<Tensor>& g) {
      const Tensor g_rows = g[0].contiguous().view(y_rows.shape());
      Tensor dx = Tensor::empty(y_rows.shape(), y_rows.dtype(), y_rows.device());
      Backend& b = backend_for(y_rows.device());
      if (log)
        b.log_softmax_backward(y_rows, g_rows, dx);
      else
        b.softmax_backward(y_rows, g_rows, dx);
      return std::vector<Tensor>{dx.view(shape)};
    });
  return y;
}

Tensor softmax_dim(const Tensor& x, int64_t dim, bool log) {
  if (x.dim() == 0) return softmax_last(x, log);
  const int d = normalize_dim(dim, x.dim());
  const int last = static_cast<int>(x.dim()) - 1;
  if (d == last) return softmax_last(x, log);
  return softmax_last(x.transpose(d, last), log).transpose(d, last);
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_dim(x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_dim(x, dim, true); }

}  // namespace qtune::ops
