// Row softmax / log-softmax over the last dim and their backward rules. Each row is independent,
// so rows are split across threads; the row max is subtracted before exp for stability. The entry
// points check their operands (Backend::check_row_pair) before the row loops run.
#include <algorithm>
#include <cmath>
#include <limits>

#include "cpu/cpu_backend.h"
#include "cpu/kernel_util.h"
#include "cpu/row_max.h"
#include "cpu/row_sum.h"

namespace qtune::cpu {
namespace {

// Grain in rows so a thread gets at least ~16K elements of work.
int64_t row_grain(int64_t cols) { return cols >= (1 << 14) ? 1 : (1 << 14) / (cols > 0 ? cols : 1); }

template <bool kLog>
void softmax_forward(const char* kernel, const Tensor& x, const Tensor& y) {
  const int64_t rows = x.size(0), cols = x.size(1);
  dispatch_float(x.dtype(), kernel, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const T* in = ptr<T>(x);
    T* out = ptr<T>(y);
    parallel_for(rows, row_grain(cols), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const T* xr = in + r * cols;
        T* yr = out + r * cols;
        const A mx = row_max(xr, cols);
        // An all -inf row has no finite max; shifting by 0 keeps exp(-inf) = 0 instead of NaN.
        const A shift = std::isfinite(mx) ? mx : A(0);
        const A sum = row_sum<A>(cols, [&](int64_t c) { return std::exp(load(xr + c) - shift); });
        if constexpr (kLog) {
          const A log_sum = std::log(sum) + shift;
          for (int64_t c = 0; c < cols; ++c) store(yr + c, load(xr + c) - log_sum);
        } else {
          const A inv = A(1) / sum;
          for (int64_t c = 0; c < cols; ++c) store(yr + c, std::exp(load(xr + c) - shift) * inv);
        }
      }
    });
  });
}

// softmax:     dx = y * (dy - sum(dy * y))
// log_softmax: dx = dy - exp(y) * sum(dy)
template <bool kLog>
void softmax_backward_rows(const char* kernel, const Tensor& y, const Tensor& grad_y, const Tensor& grad_x) {
  const int64_t rows = y.size(0), cols = y.size(1);
  dispatch_float(y.dtype(), kernel, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const T* py = ptr<T>(y);
    const T* pg = ptr<T>(grad_y);
    T* pd = ptr<T>(grad_x);
    parallel_for(rows, row_grain(cols), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const T* yr = py + r * cols;
        const T* gr = pg + r * cols;
        T* dr = pd + r * cols;
        if constexpr (kLog) {
          const A dot = row_sum<A>(cols, [&](int64_t c) { return A(load(gr + c)); });
          for (int64_t c = 0; c < cols; ++c) store(dr + c, load(gr + c) - std::exp(load(yr + c)) * dot);
        } else {
          const A dot = row_sum<A>(cols, [&](int64_t c) { return A(load(gr + c)) * load(yr + c); });
          for (int64_t c = 0; c < cols; ++c) store(dr + c, load(yr + c) * (load(gr + c) - dot));
        }
      }
    });
  });
}

}  // namespace

void CpuBackend::softmax(const Tensor& x, const Tensor& y) {
  check_row_pair("softmax", x, "x", y, "y");
  softmax_forward<false>("softmax", x, y);
}
void CpuBackend::log_softmax(const Tensor& x, const Tensor& y) {
  check_row_pair("log_softmax", x, "x", y, "y");
  softmax_forward<true>("log_softmax", x, y);
}
void CpuBackend::softmax_backward(const Tensor& y, const Tensor& grad_y, const Tensor& grad_x) {
  check_row_pair("softmax_backward", y, "y", grad_y, "grad_y");
  check_row_pair("softmax_backward", y, "y", grad_x, "grad_x");
  softmax_backward_rows<false>("softmax_backward", y, grad_y, grad_x);
}
void CpuBackend::log_softmax_backward(const Tensor& y, const Tensor& grad_y, const Tensor& grad_x) {
  check_row_pair("log_softmax_backward", y, "y", grad_y, "grad_y");
  check_row_pair("log_softmax_backward", y, "y", grad_x, "grad_x");
  softmax_backward_rows<true>("log_softmax_backward", y, grad_y, grad_x);
}

}  // namespace qtune::cpu
