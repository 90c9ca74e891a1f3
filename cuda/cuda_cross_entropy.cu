// Fused cross-entropy on CUDA: one block per row computes the max, the sum of exponentials and the
// loss (no softmax copy), for vocabularies of any size; the backward writes
// grad_loss * (softmax - onehot) straight from the saved lse. Targets are checked on the device
// (a bad one stops the kernel). The math is the CPU's (cpu/cpu_cross_entropy.cpp); sums run in another
// order and exp is the device's, so results agree to rounding.
#include <cmath>

#include "cuda/block_reduce.cuh"
#include "cuda/cuda_backend.h"

namespace qtune::gpu {
namespace {

constexpr int kRowThreads = 256;

// Whether row r is ignored; stops the kernel on a target that is neither ignore_index nor in range.
__device__ __forceinline__ bool ignored_row(DeviceFault* fault, const char* kernel, const int64_t* targets, int64_t r,
                                            int64_t vocab, int64_t ignore_index) {
  const int64_t t = targets[r];
  if (t == ignore_index) return true;
  if (t >= 0 && t < vocab) return false;
  device_fail(fault, "%s: target %lld at row %lld is out of range for V = %lld (and is not ignore_index %lld)\n",
              kernel, static_cast<long long>(t), static_cast<long long>(r), static_cast<long long>(vocab),
              static_cast<long long>(ignore_index));
  return true;  // not reached: device_fail stops the thread
}

template <class T>
__global__ void cross_entropy_kernel(DeviceFault* fault, const T* logits, const int64_t* targets, acc_t<T>* loss,
                                     acc_t<T>* lse, int64_t rows, int64_t vocab, int64_t ignore_index) {
  using A = acc_t<T>;
  QTUNE_SHARED(A, partials, kRowThreads / 32);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    // The same answer for every thread of the block.
    if (ignored_row(fault, "cross_entropy", targets, r, vocab, ignore_index)) {
      if (threadIdx.x == 0) loss[r] = lse[r] = 0;
      continue;
    }
    const T* xr = logits + r * vocab;
    // NaNs are skipped by the max and surface through the sum of exponentials, as on the CPU.
    A mx = -INFINITY;
    for (int64_t c = threadIdx.x; c < vocab; c += kRowThreads) {
      const A v = load(xr + c);
      mx = v > mx ? v : mx;
    }
    mx = block_all_reduce<kRowThreads>(mx, MaxOp<A>{}, partials);
    A sum = 0;
    for (int64_t c = threadIdx.x; c < vocab; c += kRowThreads) sum += std::exp(load(xr + c) - mx);
    sum = block_all_reduce<kRowThreads>(sum, SumOp<A>{}, partials);
    if (threadIdx.x == 0) {
      const A row_lse = mx + std::log(sum);
      lse[r] = row_lse;
      loss[r] = row_lse - load(xr + targets[r]);
    }
  }
}

template <class T>
__global__ void cross_entropy_backward_kernel(DeviceFault* fault, const T* logits, const int64_t* targets,
                                              const acc_t<T>* lse, const acc_t<T>* grad_loss, T* grad_logits,
                                              int64_t rows, int64_t vocab, int64_t ignore_index) {
  using A = acc_t<T>;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    T* dr = grad_logits + r * vocab;
    if (ignored_row(fault, "cross_entropy_backward", targets, r, vocab, ignore_index)) {
      for (int64_t c = threadIdx.x; c < vocab; c += kRowThreads) store(dr + c, A(0));
      continue;
    }
    const T* xr = logits + r * vocab;
    const A g = grad_loss[r], row_lse = lse[r];
    const int64_t target = targets[r];
    for (int64_t c = threadIdx.x; c < vocab; c += kRowThreads) {
      const A p = std::exp(load(xr + c) - row_lse);
      store(dr + c, c == target ? g * (p - A(1)) : g * p);
    }
  }
}

}  // namespace

void CudaBackend::cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index, const Tensor& loss,
                                const Tensor& lse) {
  check_cross_entropy_args("cross_entropy", logits, targets, {{&loss, "loss"}, {&lse, "lse"}});
  const int64_t rows = logits.size(0), vocab = logits.size(1);
  if (rows == 0) return;
  activate();
  dispatch_float(logits.dtype(), "cross_entropy", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    launch<cross_entropy_kernel<T>>(LaunchShape{blocks_for_rows(rows), kRowThreads, 0, stream_},
                                    device_fault_record(index_), static_cast<const T*>(logits.data_ptr()),
                                    static_cast<const int64_t*>(targets.data_ptr()), static_cast<A*>(loss.data_ptr()),
                                    static_cast<A*>(lse.data_ptr()), rows, vocab, ignore_index);
  });
}

void CudaBackend::cross_entropy_backward(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                                         const Tensor& lse, const Tensor& grad_loss, const Tensor& grad_logits) {
  check_cross_entropy_args("cross_entropy_backward", logits, targets, {{&lse, "lse"}, {&grad_loss, "grad_loss"}});
  check_like("cross_entropy_backward", logits, "logits", grad_logits, "grad_logits");
  const int64_t rows = logits.size(0), vocab = logits.size(1);
  if (rows == 0) return;
  activate();
  dispatch_float(logits.dtype(), "cross_entropy_backward", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    launch<cross_entropy_backward_kernel<T>>(
        LaunchShape{blocks_for_rows(rows), kRowThreads, 0, stream_}, device_fault_record(index_),
        static_cast<const T*>(logits.data_ptr()), static_cast<const int64_t*>(targets.data_ptr()),
        static_cast<const A*>(lse.data_ptr()), static_cast<const A*>(grad_loss.data_ptr()),
        static_cast<T*>(grad_logits.data_ptr()), rows, vocab, ignore_index);
  });
}

}  // namespace qtune::gpu
