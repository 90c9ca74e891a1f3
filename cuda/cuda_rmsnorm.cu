// Fused RMSNorm on CUDA: one block per row for y and rstd, and for grad_x; the weight gradient sums
// over rows in a fixed number of row chunks, then over the chunks in order, so it is deterministic and
// needs no atomics. The math is the CPU's (cpu/cpu_rmsnorm.cpp); sums run in another order.
#include <cmath>

#include "cuda/block_reduce.cuh"
#include "cuda/cuda_backend.h"

namespace qtune::gpu {
namespace {

constexpr int kRowThreads = 256;
// Row chunks of the weight gradient: enough blocks to fill a GPU for short rows, a fixed count so the
// summation order never depends on the device.
constexpr int64_t kWeightChunks = 64;

template <class T>
__global__ void rmsnorm_kernel(const T* x, const T* weight, T* y, acc_t<T>* rstd, int64_t rows, int64_t cols,
                               acc_t<T> eps) {
  using A = acc_t<T>;
  QTUNE_SHARED(A, partials, kRowThreads / 32);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    A sum = 0;
    for (int64_t c = threadIdx.x; c < cols; c += kRowThreads) {
      const A v = load(xr + c);
      sum += v * v;
    }
    sum = block_all_reduce<kRowThreads>(sum, SumOp<A>{}, partials);
    const A inv = A(1) / std::sqrt(sum / static_cast<A>(cols) + eps);
    if (threadIdx.x == 0) rstd[r] = inv;
    for (int64_t c = threadIdx.x; c < cols; c += kRowThreads)
      store(y + r * cols + c, load(xr + c) * inv * load(weight + c));
  }
}

// y = x * inv * w  =>  dx = inv * (g*w) - x * inv^3 / C * sum(g*w*x)
template <class T>
__global__ void rmsnorm_grad_x_kernel(const T* grad_y, const T* x, const T* weight, const acc_t<T>* rstd, T* grad_x,
                                      int64_t rows, int64_t cols) {
  using A = acc_t<T>;
  QTUNE_SHARED(A, partials, kRowThreads / 32);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    const T* gr = grad_y + r * cols;
    A dot = 0;
    for (int64_t c = threadIdx.x; c < cols; c += kRowThreads)
      dot += A(load(gr + c)) * A(load(weight + c)) * A(load(xr + c));
    dot = block_all_reduce<kRowThreads>(dot, SumOp<A>{}, partials);
    const A inv = rstd[r];
    const A k = dot * inv * inv * inv / static_cast<A>(cols);
    for (int64_t c = threadIdx.x; c < cols; c += kRowThreads)
      store(grad_x + r * cols + c, inv * load(gr + c) * load(weight + c) - load(xr + c) * k);
  }
}

// partial[chunk, c] = sum over the chunk's rows of grad_y * x * rstd; blockIdx.y is the chunk.
template <class T>
__global__ void rmsnorm_weight_partials(const T* grad_y, const T* x, const acc_t<T>* rstd, acc_t<T>* partial,
                                        int64_t rows, int64_t cols, int64_t rows_per_chunk) {
  using A = acc_t<T>;
  const int64_t r0 = blockIdx.y * rows_per_chunk;
  const int64_t r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
  for (int64_t c = thread_index(); c < cols; c += thread_count()) {
    A sum = 0;
    for (int64_t r = r0; r < r1; ++r) sum += A(load(grad_y + r * cols + c)) * A(load(x + r * cols + c)) * rstd[r];
    partial[blockIdx.y * cols + c] = sum;
  }
}

template <class T>
__global__ void rmsnorm_weight_sum(const acc_t<T>* partial, T* grad_weight, int64_t chunks, int64_t cols) {
  using A = acc_t<T>;
  for (int64_t c = thread_index(); c < cols; c += thread_count()) {
    A sum = 0;
    for (int64_t k = 0; k < chunks; ++k) sum += partial[k * cols + c];
    store(grad_weight + c, sum);
  }
}

}  // namespace

void CudaBackend::rmsnorm(const Tensor& x, const Tensor& weight, double eps, const Tensor& y, const Tensor& rstd) {
  check_rmsnorm_args("rmsnorm", x, weight, y, rstd);
  const int64_t rows = x.size(0), cols = x.size(1);
  if (rows == 0) return;
  activate();
  dispatch_float(x.dtype(), "rmsnorm", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    launch<rmsnorm_kernel<T>>(LaunchShape{blocks_for_rows(rows), kRowThreads, 0, stream_},
                              static_cast<const T*>(x.data_ptr()), static_cast<const T*>(weight.data_ptr()),
                              static_cast<T*>(y.data_ptr()), static_cast<A*>(rstd.data_ptr()), rows, cols,
                              static_cast<A>(eps));
  });
}

void CudaBackend::rmsnorm_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weight, const Tensor& rstd,
                                   const Tensor& grad_x, const Tensor& grad_weight) {
  check_rmsnorm_args("rmsnorm_backward", x, weight, grad_y, rstd);
  check_like("rmsnorm_backward", x, "x", grad_x, "grad_x");
  check_like("rmsnorm_backward", weight, "weight", grad_weight, "grad_weight");
  const int64_t rows = x.size(0), cols = x.size(1);
  if (cols == 0) return;
  activate();
  const int64_t chunks = rows < kWeightChunks ? (rows < 1 ? 1 : rows) : kWeightChunks;
  const int64_t rows_per_chunk = (rows + chunks - 1) / chunks;
  dispatch_float(x.dtype(), "rmsnorm_backward", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const T* pg = static_cast<const T*>(grad_y.data_ptr());
    const T* px = static_cast<const T*>(x.data_ptr());
    const A* pr = static_cast<const A*>(rstd.data_ptr());
    if (rows > 0)
      launch<rmsnorm_grad_x_kernel<T>>(LaunchShape{blocks_for_rows(rows), kRowThreads, 0, stream_}, pg, px,
                                       static_cast<const T*>(weight.data_ptr()), pr, static_cast<T*>(grad_x.data_ptr()),
                                       rows, cols);
    // Freed right after the launches: the stream orders the caching allocator's reuse after them.
    const Tensor partial = Tensor::empty({chunks, cols}, rstd.dtype(), device());
    A* pp = static_cast<A*>(partial.data_ptr());
    const unsigned col_blocks = (static_cast<unsigned>(cols) + kThreads - 1) / kThreads;
    launch<rmsnorm_weight_partials<T>>(
        LaunchShape{dim3(col_blocks, static_cast<unsigned>(chunks)), kThreads, 0, stream_}, pg, px, pr, pp, rows, cols,
        rows_per_chunk);
    launch<rmsnorm_weight_sum<T>>(LaunchShape{blocks_for(cols), kThreads, 0, stream_}, pp,
                                  static_cast<T*>(grad_weight.data_ptr()), chunks, cols);
  });
}

}  // namespace qtune::gpu
