// Row softmax / log-softmax over the last dim and their backward rules on CUDA: one block per row
// (grid-striding over rows), warp shuffles then a fixed pass over the warps' partials, so a row's
// result never depends on the launch. The max is subtracted before exp, as on the CPU
// (cpu/cpu_softmax.cpp); sums run in another order than the CPU's, so results agree to rounding.
#include <cmath>

#include "cuda/block_reduce.cuh"
#include "cuda/cuda_backend.h"

namespace qtune::gpu {
namespace {

constexpr int kRowThreads = 256;
constexpr int kWarps = kRowThreads / 32;

template <class T, bool Log>
__global__ void softmax_kernel(const T* x, T* y, int64_t rows, int64_t cols) {
  using A = acc_t<T>;
  QTUNE_SHARED(A, partials, kWarps);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    A mx = -INFINITY;
    for (int64_t c = threadIdx.x; c < cols; c += kRowThreads) mx = MaxOp<A>{}(mx, load(xr + c));
    mx = block_all_reduce<kRowThreads>(mx, MaxOp<A>{}, partials);
    // An all -inf row has no finite max; shifting by 0 keeps exp(-inf) = 0 instead of NaN.
    const A shift = isfinite(mx) ? mx : A(0);
    A sum = 0;
    for (int64_t c = threadIdx.x; c < cols; c += kRowThreads) sum += std::exp(load(xr + c) - shift);
    sum = block_all_reduce<kRowThreads>(sum, SumOp<A>{}, partials);
    if constexpr (Log) {
      const A log_sum = std::log(sum) + shift;
      for (int64_t c = threadIdx.x; c < cols; c += kRowThreads) store(yr + c, load(xr + c) - log_sum);
    } else {
      const A inv = A(1) / sum;
      for (int64_t c = threadIdx.x; c < cols; c += kRowThreads) store(yr + c, std::exp(load(xr + c) - shift) * inv);
    }
  }
}

// softmax:     dx = y * (dy - sum(dy * y))
// log_softmax: dx = dy - exp(y) * sum(dy)
template <class T, bool Log>
__global__ void softmax_backward_kernel(const T* y, const T* grad_y, T* grad_x, int64_t rows, int64_t cols) {
  using A = acc_t<T>;
  QTUNE_SHARED(A, partials, kWarps);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* yr = y + r * cols;
    const T* gr = grad_y + r * cols;
    T* dr = grad_x + r * cols;
    A dot = 0;
    for (int64_t c = threadIdx.x; c < cols; c += kRowThreads)
      dot += Log ? A(load(gr + c)) : A(load(gr + c)) * A(load(yr + c));
    dot = block_all_reduce<kRowThreads>(dot, SumOp<A>{}, partials);
    for (int64_t c = threadIdx.x; c < cols; c += kRowThreads) {
      if constexpr (Log)
        store(dr + c, load(gr + c) - std::exp(load(yr + c)) * dot);
      else
        store(dr + c, load(yr + c) * (load(gr + c) - dot));
    }
  }
}

}  // namespace

template <bool Log>
void CudaBackend::softmax_rows(const char* kernel, const Tensor& x, const Tensor& y) {
  check_row_pair(kernel, x, "x", y, "y");
  const int64_t rows = x.size(0), cols = x.size(1);
  if (rows == 0 || cols == 0) return;
  activate();
  dispatch_float(x.dtype(), kernel, [&](auto tag) {
    using T = decltype(tag);
    launch<softmax_kernel<T, Log>>(LaunchShape{blocks_for_rows(rows), kRowThreads, 0, stream_},
                                   static_cast<const T*>(x.data_ptr()), static_cast<T*>(y.data_ptr()), rows, cols);
  });
}

template <bool Log>
void CudaBackend::softmax_rows_backward(const char* kernel, const Tensor& y, const Tensor& grad_y,
                                        const Tensor& grad_x) {
  check_row_pair(kernel, y, "y", grad_y, "grad_y");
  check_row_pair(kernel, y, "y", grad_x, "grad_x");
  const int64_t rows = y.size(0), cols = y.size(1);
  if (rows == 0 || cols == 0) return;
  activate();
  dispatch_float(y.dtype(), kernel, [&](auto tag) {
    using T = decltype(tag);
    launch<softmax_backward_kernel<T, Log>>(
        LaunchShape{blocks_for_rows(rows), kRowThreads, 0, stream_}, static_cast<const T*>(y.data_ptr()),
        static_cast<const T*>(grad_y.data_ptr()), static_cast<T*>(grad_x.data_ptr()), rows, cols);
  });
}

void CudaBackend::softmax(const Tensor& x, const Tensor& y) { softmax_rows<false>("softmax", x, y); }
void CudaBackend::log_softmax(const Tensor& x, const Tensor& y) { softmax_rows<true>("log_softmax", x, y); }
void CudaBackend::softmax_backward(const Tensor& y, const Tensor& grad_y, const Tensor& grad_x) {
  softmax_rows_backward<false>("softmax_backward", y, grad_y, grad_x);
}
void CudaBackend::log_softmax_backward(const Tensor& y, const Tensor& grad_y, const Tensor& grad_x) {
  softmax_rows_backward<true>("log_softmax_backward", y, grad_y, grad_x);
}

}  // namespace qtune::gpu
