// Reductions over any set of dims: out has x's rank with size 1 at every reduced dim.
#include <cmath>
#include <limits>
#include <vector>

#include "cpu/cpu_backend.h"
#include "cpu/kernel_util.h"

namespace qtune::cpu {

void CpuBackend::reduce(ReduceOp op, const Tensor& x, const Tensor& out) {
  check_reduce_args(x, out);
  // Walk x once; out's strides are 0 along reduced dims so every input element finds its slot.
  Strides out_strides = out.strides();
  for (size_t d = 0; d < x.dim(); ++d)
    if (out.shape()[d] != x.shape()[d]) out_strides[d] = 0;
  double init = 0.0;
  if (op == ReduceOp::max) init = -std::numeric_limits<double>::infinity();
  if (op == ReduceOp::min) init = std::numeric_limits<double>::infinity();
  std::vector<double> acc(static_cast<size_t>(out.numel()), init);
  dispatch_float(x.dtype(), "reduce", [&](auto tag) {
    using T = decltype(tag);
    const T* in = ptr<T>(x);
    for_each_run<2>(x.shape(), {x.strides(), out_strides}, [&](auto off, int64_t n, auto inner) {
      const T* a = in + off[0];
      double* o = acc.data() + off[1];
      for (int64_t i = 0; i < n; ++i) {
        const double v = load(a + i * inner[0]);
        double& slot = o[i * inner[1]];
        switch (op) {
          case ReduceOp::sum:
            slot += v;
            break;
          case ReduceOp::max:
            slot = v > slot || std::isnan(v) ? v : slot;
            break;
          case ReduceOp::min:
            slot = v < slot || std::isnan(v) ? v : slot;
            break;
          case ReduceOp::amax:
            slot = std::fabs(v) > slot || std::isnan(v) ? std::fabs(v) : slot;
            break;
        }
      }
    });
    T* o = ptr<T>(out);
    for (size_t i = 0; i < acc.size(); ++i) store(o + i, acc[i]);
  });
}

}  // namespace qtune::cpu
