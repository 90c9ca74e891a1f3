// Optimizer updates (AdamW, SGD) over the scalar numerics of engine/numerics/adamw.h, so a GPU update
// is the CPU's to the bit, and the blocked sum of squares that gradient clipping needs. Grid-stride
// loops over contiguous memory; the per-step scalars are computed once on the host, as on the CPU.
#include "cuda/cuda_backend.h"
#include "cuda/device_util.cuh"
#include "engine/numerics/adamw.h"
#include "engine/numerics/clip.h"

namespace qtune::gpu {
namespace {

template <class T>
__global__ void adamw_kernel(T* param, const T* grad, float* exp_avg, float* exp_avg_sq, int64_t n,
                             numerics::AdamWScalars s) {
  for (int64_t i = thread_index(); i < n; i += thread_count()) {
    float p = static_cast<float>(load(param + i));
    numerics::adamw_update(p, static_cast<float>(load(grad + i)), exp_avg[i], exp_avg_sq[i], s);
    store(param + i, p);
  }
}

// Mixed precision's update in one pass: the f32 master from the gradient, rounded into the parameter.
template <class T>
__global__ void adamw_master_kernel(T* param, const T* grad, float* master, float* exp_avg, float* exp_avg_sq,
                                    int64_t n, numerics::AdamWScalars s) {
  for (int64_t i = thread_index(); i < n; i += thread_count()) {
    numerics::adamw_update(master[i], static_cast<float>(load(grad + i)), exp_avg[i], exp_avg_sq[i], s);
    store(param + i, master[i]);
  }
}

// momentum_buffer: nullptr when momentum is 0.
template <class T>
__global__ void sgd_kernel(T* param, const T* grad, float* momentum_buffer, int64_t n, numerics::SGDScalars s) {
  for (int64_t i = thread_index(); i < n; i += thread_count()) {
    float p = static_cast<float>(load(param + i));
    float unused = 0.0f;
    numerics::sgd_update(p, static_cast<float>(load(grad + i)),
                         momentum_buffer != nullptr ? momentum_buffer[i] : unused, s);
    store(param + i, p);
  }
}

// Each CUDA block sums the squares of one fixed chunk in f32 (f64 for f64) and a fixed tree; a single
// block then adds the chunk sums in f64. The result depends on the size alone, never on the launch.
constexpr int kNormThreads = 256;
constexpr int64_t kNormChunk = 1 << 14;

template <class A>
__device__ A block_tree_sum(A value, A* shared) {
  shared[threadIdx.x] = value;
  __syncthreads();
  for (int stride = kNormThreads / 2; stride > 0; stride /= 2) {
    if (static_cast<int>(threadIdx.x) < stride) shared[threadIdx.x] += shared[threadIdx.x + stride];
    __syncthreads();
  }
  return shared[0];
}

template <class T>
__global__ void chunk_sum_squares(const T* x, int64_t n, double* partial) {
  using A = acc_t<T>;
  QTUNE_SHARED(A, shared, kNormThreads);
  const int64_t begin = static_cast<int64_t>(blockIdx.x) * kNormChunk;
  const int64_t end = begin + kNormChunk < n ? begin + kNormChunk : n;
  A acc = 0;
  for (int64_t i = begin + threadIdx.x; i < end; i += kNormThreads) {
    const A v = load(x + i);
    acc += v * v;
  }
  const A total = block_tree_sum(acc, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = static_cast<double>(total);
}

__global__ void sum_chunks(const double* partial, int64_t count, double* out) {
  QTUNE_SHARED(double, shared, kNormThreads);
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += kNormThreads) acc += partial[i];
  const double total = block_tree_sum(acc, shared);
  if (threadIdx.x == 0) *out = total;
}

}  // namespace

void CudaBackend::adamw_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                             double lr, double beta1, double beta2, double eps, double weight_decay, int64_t step) {
  check_update_args("adamw_step", param, grad, {&exp_avg, &exp_avg_sq});
  QTUNE_CHECK(exp_avg.defined() && exp_avg_sq.defined(), "adamw_step: exp_avg and exp_avg_sq are required");
  const int64_t n = param.numel();
  if (n == 0) return;
  const numerics::AdamWScalars s = numerics::adamw_scalars(lr, beta1, beta2, eps, weight_decay, step);
  activate();
  dispatch_float(param.dtype(), "adamw_step", [&](auto tag) {
    using T = decltype(tag);
    launch<adamw_kernel<T>>(LaunchShape{blocks_for(n), kThreads, 0, stream_}, static_cast<T*>(param.data_ptr()),
                            static_cast<const T*>(grad.data_ptr()), static_cast<float*>(exp_avg.data_ptr()),
                            static_cast<float*>(exp_avg_sq.data_ptr()), n, s);
  });
}

void CudaBackend::adamw_step_master(const Tensor& param, const Tensor& master, const Tensor& grad,
                                    const Tensor& exp_avg, const Tensor& exp_avg_sq, double lr, double beta1,
                                    double beta2, double eps, double weight_decay, int64_t step) {
  check_master_update_args(param, master, grad, exp_avg, exp_avg_sq);
  const int64_t n = param.numel();
  if (n == 0) return;
  const numerics::AdamWScalars s = numerics::adamw_scalars(lr, beta1, beta2, eps, weight_decay, step);
  activate();
  dispatch_float(param.dtype(), "adamw_step_master", [&](auto tag) {
    using T = decltype(tag);
    launch<adamw_master_kernel<T>>(LaunchShape{blocks_for(n), kThreads, 0, stream_}, static_cast<T*>(param.data_ptr()),
                                   static_cast<const T*>(grad.data_ptr()), static_cast<float*>(master.data_ptr()),
                                   static_cast<float*>(exp_avg.data_ptr()), static_cast<float*>(exp_avg_sq.data_ptr()),
                                   n, s);
  });
}

void CudaBackend::sgd_step(const Tensor& param, const Tensor& grad, const Tensor& momentum_buffer, double lr,
                           double momentum, double dampening, bool nesterov, double weight_decay, bool first_step) {
  check_update_args("sgd_step", param, grad, {&momentum_buffer});
  const numerics::SGDScalars s = numerics::sgd_scalars(lr, momentum, dampening, nesterov, weight_decay, first_step);
  QTUNE_CHECK(momentum_buffer.defined() == s.has_momentum, "sgd_step: a momentum buffer is needed exactly when ",
              "momentum != 0 (momentum ", momentum, ")");
  const int64_t n = param.numel();
  if (n == 0) return;
  float* buffer = s.has_momentum ? static_cast<float*>(momentum_buffer.data_ptr()) : nullptr;
  activate();
  dispatch_float(param.dtype(), "sgd_step", [&](auto tag) {
    using T = decltype(tag);
    launch<sgd_kernel<T>>(LaunchShape{blocks_for(n), kThreads, 0, stream_}, static_cast<T*>(param.data_ptr()),
                          static_cast<const T*>(grad.data_ptr()), buffer, n, s);
  });
}

void CudaBackend::squared_norm(const Tensor& x, const Tensor& out) {
  check_on_device("squared_norm", {&x, &out});
  QTUNE_CHECK(x.is_contiguous(), "squared_norm: x must be contiguous (shape ", shape_str(x.shape()), ")");
  QTUNE_CHECK(out.dtype() == DType::f64 && out.numel() == 1 && out.is_contiguous(),
              "squared_norm: out must be one f64 element, got ", dtype_name(out.dtype()), " ", shape_str(out.shape()));
  const int64_t n = x.numel(), chunks = (n + kNormChunk - 1) / kNormChunk;
  // Freed at return while the kernels may still run: safe, as every kernel of the device is queued on one
  // stream and the caching allocator hands the block out only to later work on it.
  const Tensor partial = Tensor::empty({chunks > 0 ? chunks : 1}, DType::f64, device());
  activate();
  if (chunks > 0) {
    dispatch_float(x.dtype(), "squared_norm", [&](auto tag) {
      using T = decltype(tag);
      launch<chunk_sum_squares<T>>(LaunchShape{static_cast<unsigned>(chunks), kNormThreads, 0, stream_},
                                   static_cast<const T*>(x.data_ptr()), n, static_cast<double*>(partial.data_ptr()));
    });
  }
  launch<sum_chunks>(LaunchShape{1, kNormThreads, 0, stream_}, static_cast<const double*>(partial.data_ptr()), chunks,
                     static_cast<double*>(out.data_ptr()));
}

namespace {

// Every block works out the coefficient from the squared norms (a few hundred values, read in order), so
// the norm never leaves the device; the gradient is then scaled as the affine kernel would.
template <class T>
__global__ void clip_by_norm_kernel(const double* squares, int64_t count, double max_norm, T* grad, int64_t n) {
  using A = acc_t<T>;
  QTUNE_SHARED(float, coef, 1);
  QTUNE_SHARED(int, applies, 1);
  if (threadIdx.x == 0) {
    const double norm = numerics::norm_from_squares(squares, count);
    applies[0] = numerics::clip_applies(norm, max_norm);
    coef[0] = numerics::clip_coefficient(norm, max_norm);
  }
  __syncthreads();
  if (!applies[0]) return;
  const A alpha = static_cast<A>(static_cast<double>(coef[0]));
  for (int64_t i = thread_index(); i < n; i += thread_count()) store(grad + i, alpha * load(grad + i) + A(0));
}

}  // namespace

void CudaBackend::clip_by_norm(const Tensor& squares, double max_norm, const Tensor& grad) {
  check_clip_by_norm_args(squares, grad);
  const int64_t n = grad.numel();
  if (n == 0) return;
  activate();
  dispatch_float(grad.dtype(), "clip_by_norm", [&](auto tag) {
    using T = decltype(tag);
    launch<clip_by_norm_kernel<T>>(LaunchShape{blocks_for(n), kThreads, 0, stream_},
                                   static_cast<const double*>(squares.data_ptr()), squares.numel(), max_norm,
                                   static_cast<T*>(grad.data_ptr()), n);
  });
}

}  // namespace qtune::gpu
