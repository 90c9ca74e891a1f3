// Embedding gather and its backward on CUDA. The backward gives each thread one column and walks the
// ids in order, adding in the weight's dtype exactly as the CPU does (cpu/cpu_embedding.cpp): repeated
// ids are summed in a fixed order without float atomics, and the result equals the CPU's bit for bit.
#include "cuda/cuda_backend.h"
#include "cuda/device_util.cuh"

namespace qtune::gpu {
namespace {

template <class I>
__device__ __forceinline__ int64_t checked_id(DeviceFault* fault, const char* kernel, const I* ids, int64_t n,
                                              int64_t vocab) {
  const int64_t id = static_cast<int64_t>(ids[n]);
  if (id >= 0 && id < vocab) return id;
  device_fail(fault, "%s: id %lld at position %lld is out of range for a vocabulary of V = %lld\n", kernel,
              static_cast<long long>(id), static_cast<long long>(n), static_cast<long long>(vocab));
  return 0;  // not reached: device_fail stops the thread
}

// out[n, c] = weight[ids[n], c]
template <class T, class I>
__global__ void embedding_kernel(DeviceFault* fault, const T* weight, const I* ids, T* out, int64_t n_ids,
                                 int64_t vocab, int64_t cols) {
  for (int64_t i = thread_index(); i < n_ids * cols; i += thread_count()) {
    const int64_t n = i / cols, c = i % cols;
    out[i] = weight[checked_id(fault, "embedding", ids, n, vocab) * cols + c];
  }
}

// grad_weight[ids[n], c] += grad_out[n, c] for n = 0, 1, ... in order, one thread per column.
template <class T, class I>
__global__ void embedding_backward_kernel(DeviceFault* fault, const T* grad_out, const I* ids, T* grad_weight,
                                          int64_t n_ids, int64_t vocab, int64_t cols) {
  for (int64_t c = thread_index(); c < cols; c += thread_count())
    for (int64_t n = 0; n < n_ids; ++n) {
      T* dst = grad_weight + checked_id(fault, "embedding_backward", ids, n, vocab) * cols + c;
      store(dst, load(dst) + load(grad_out + n * cols + c));
    }
}

template <class F>
void dispatch_ids(const Tensor& ids, F&& f) {
  if (ids.dtype() == DType::i64)
    f(static_cast<const int64_t*>(ids.data_ptr()));
  else
    f(static_cast<const int32_t*>(ids.data_ptr()));
}

}  // namespace

void CudaBackend::embedding(const Tensor& weight, const Tensor& ids, const Tensor& out) {
  check_embedding_args("embedding", weight, "weight", ids, out, "output");
  const int64_t vocab = weight.size(0), cols = weight.size(1), n_ids = ids.numel();
  if (n_ids * cols == 0) return;
  activate();
  // A row is copied as raw elements: dispatching on the element size covers every dtype.
  dispatch_ids(ids, [&](auto* pid) {
    using I = std::remove_const_t<std::remove_pointer_t<decltype(pid)>>;
    auto run = [&](auto tag) {
      using T = decltype(tag);
      launch<embedding_kernel<T, I>>(LaunchShape{blocks_for(n_ids * cols), kThreads, 0, stream_},
                                     device_fault_record(index_), static_cast<const T*>(weight.data_ptr()), pid,
                                     static_cast<T*>(out.data_ptr()), n_ids, vocab, cols);
    };
    switch (weight.element_size()) {
      case 1:
        run(uint8_t{});
        break;
      case 2:
        run(uint16_t{});
        break;
      case 4:
        run(uint32_t{});
        break;
      case 8:
        run(uint64_t{});
        break;
      default:
        QTUNE_FAIL("embedding: unsupported element size ", weight.element_size());
    }
  });
}

void CudaBackend::embedding_backward(const Tensor& grad_out, const Tensor& ids, const Tensor& grad_weight) {
  check_embedding_args("embedding_backward", grad_weight, "grad_weight", ids, grad_out, "grad_out");
  const int64_t vocab = grad_weight.size(0), cols = grad_weight.size(1), n_ids = ids.numel();
  if (n_ids * cols == 0) return;
  activate();
  dispatch_float(grad_weight.dtype(), "embedding_backward", [&](auto tag) {
    using T = decltype(tag);
    dispatch_ids(ids, [&](auto* pid) {
      using I = std::remove_const_t<std::remove_pointer_t<decltype(pid)>>;
      launch<embedding_backward_kernel<T, I>>(LaunchShape{blocks_for(cols), kThreads, 0, stream_},
                                              device_fault_record(index_), static_cast<const T*>(grad_out.data_ptr()),
                                              pid, static_cast<T*>(grad_weight.data_ptr()), n_ids, vocab, cols);
    });
  });
}

}  // namespace qtune::gpu
