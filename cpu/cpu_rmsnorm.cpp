// Fused RMSNorm (HF LlamaRMSNorm): one pass for the row statistic, one for the output. Reduced
// precision inputs are normalized in f32, so rstd is f32 (f64 for f64 inputs).
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/cpu_backend.h"
#include "cpu/kernel_util.h"
#include "cpu/row_sum.h"

namespace qtune::cpu {
namespace {

template <class T>
acc_t<T> sum_squares(const T* x, int64_t n) {
  return row_sum<acc_t<T>>(n, [x](int64_t i) {
    const acc_t<T> v = load(x + i);
    return v * v;
  });
}

}  // namespace

void CpuBackend::rmsnorm(const Tensor& x, const Tensor& weight, double eps, const Tensor& y, const Tensor& rstd) {
  check_rmsnorm_args("rmsnorm", x, weight, y, rstd);
  const int64_t rows = x.size(0), cols = x.size(1);
  dispatch_float(x.dtype(), "rmsnorm", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const T* px = ptr<T>(x);
    const T* pw = ptr<T>(weight);
    T* py = ptr<T>(y);
    A* pr = ptr<A>(rstd);
    parallel_for(rows, std::max<int64_t>(1, 4096 / std::max<int64_t>(cols, 1)), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const T* xr = px + r * cols;
        T* yr = py + r * cols;
        const A mean_sq = sum_squares(xr, cols) / static_cast<A>(cols);
        const A inv = A(1) / std::sqrt(mean_sq + static_cast<A>(eps));
        pr[r] = inv;
        for (int64_t c = 0; c < cols; ++c) store(yr + c, load(xr + c) * inv * load(pw + c));
      }
    });
  });
}

void CpuBackend::rmsnorm_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weight, const Tensor& rstd,
                                  const Tensor& grad_x, const Tensor& grad_weight) {
  check_rmsnorm_args("rmsnorm_backward", x, weight, grad_y, rstd);
  check_like("rmsnorm_backward", x, "x", grad_x, "grad_x");
  check_like("rmsnorm_backward", weight, "weight", grad_weight, "grad_weight");
  const int64_t rows = x.size(0), cols = x.size(1);
  dispatch_float(x.dtype(), "rmsnorm_backward", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const T* px = ptr<T>(x);
    const T* pw = ptr<T>(weight);
    const T* pg = ptr<T>(grad_y);
    const A* pr = ptr<A>(rstd);
    T* pgx = ptr<T>(grad_x);
    // grad_weight sums over rows: each chunk of kRowsPerChunk rows writes its own partial row, summed in
    // chunk order afterwards, so threads never share an accumulator and the result does not depend on the
    // thread count (FSDP's ranks, one thread each, reproduce a multi-threaded single process).
    constexpr int64_t kRowsPerChunk = 32;
    const int64_t chunks = std::max<int64_t>((rows + kRowsPerChunk - 1) / kRowsPerChunk, 1);
    std::vector<A> partial(static_cast<size_t>(chunks * cols), A(0));
    const int64_t per_chunk = kRowsPerChunk;
    parallel_for(chunks, std::max<int64_t>(1, 8192 / std::max<int64_t>(kRowsPerChunk * cols, 1)),
                 [&](int64_t cb, int64_t ce) {
                   for (int64_t chunk = cb; chunk < ce; ++chunk) {
                     A* gw = partial.data() + chunk * cols;
                     const int64_t r_end = std::min(rows, (chunk + 1) * per_chunk);
                     for (int64_t r = chunk * per_chunk; r < r_end; ++r) {
                       const T* xr = px + r * cols;
                       const T* gr = pg + r * cols;
                       T* gxr = pgx + r * cols;
                       const A inv = pr[r];
                       // y = x * inv * w  =>  dx = inv * (g*w) - x * inv^3 / C * sum(g*w*x)
                       const A dot = row_sum<A>(
                           cols, [&](int64_t c) { return static_cast<A>(load(gr + c)) * load(pw + c) * load(xr + c); });
                       for (int64_t c = 0; c < cols; ++c) gw[c] += static_cast<A>(load(gr + c)) * load(xr + c) * inv;
                       const A k = dot * inv * inv * inv / static_cast<A>(cols);
                       for (int64_t c = 0; c < cols; ++c)
                         store(gxr + c, inv * load(gr + c) * load(pw + c) - load(xr + c) * k);
                     }
                   }
                 });
    T* out = ptr<T>(grad_weight);
    for (int64_t c = 0; c < cols; ++c) {
      A s = 0;
      for (int64_t chunk = 0; chunk < chunks; ++chunk) s += partial[static_cast<size_t>(chunk * cols + c)];
      store(out + c, s);
    }
  });
}

}  // namespace qtune::cpu
