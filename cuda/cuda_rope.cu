// HF rotate-half RoPE on CUDA: one thread per rotated pair (x[i], x[i + D/2]) of a head, the same
// products as the CPU (cpu/cpu_rope.cpp), so results are equal bit for bit under -fmad=false.
#include "cuda/cuda_backend.h"
#include "cuda/device_util.cuh"

namespace qtune::gpu {
namespace {

// x, y: [B, T, H, D]; cos, sin: [T, D/2]. Pair p = ((b * T + t) * H + h) * half + i.
template <class T>
__global__ void rope_kernel(const T* x, const acc_t<T>* cos, const acc_t<T>* sin, T* y, int64_t pairs, int64_t seq,
                            int64_t heads, int64_t half, acc_t<T> sign) {
  using A = acc_t<T>;
  for (int64_t p = thread_index(); p < pairs; p += thread_count()) {
    const int64_t i = p % half, row = p / half;  // row = (b * T + t) * H + h
    const int64_t t = (row / heads) % seq;
    const int64_t base = row * 2 * half;
    // Both inputs are read before either output is written, so y may alias x.
    const A x1 = load(x + base + i), x2 = load(x + base + i + half);
    const A c = cos[t * half + i], s = sign * sin[t * half + i];
    store(y + base + i, x1 * c - x2 * s);
    store(y + base + i + half, x2 * c + x1 * s);
  }
}

}  // namespace

void CudaBackend::rope(const Tensor& x, const Tensor& cos, const Tensor& sin, bool inverse, const Tensor& y) {
  check_rope_args(x, cos, sin, y);
  const int64_t pairs = x.numel() / 2;
  if (pairs == 0) return;
  activate();
  dispatch_float(x.dtype(), "rope", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    // The inverse rotation is the same rotation by -angle.
    launch<rope_kernel<T>>(LaunchShape{blocks_for(pairs), kThreads, 0, stream_}, static_cast<const T*>(x.data_ptr()),
                           static_cast<const A*>(cos.data_ptr()), static_cast<const A*>(sin.data_ptr()),
                           static_cast<T*>(y.data_ptr()), pairs, x.size(1), x.size(2), x.size(3) / 2,
                           inverse ? A(-1) : A(1));
  });
}

}  // namespace qtune::gpu
