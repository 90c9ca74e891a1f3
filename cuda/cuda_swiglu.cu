// Fused SwiGLU on CUDA: silu(gate) * up and both gradients in one pass each, element by element, as
// the CPU's kernel computes them (cpu/cpu_swiglu.cpp); exp is the device's, so results agree to a few ulps.
#include <cmath>

#include "cuda/cuda_backend.h"
#include "cuda/device_util.cuh"

namespace qtune::gpu {
namespace {

template <class T>
__global__ void swiglu_kernel(const T* gate, const T* up, T* out, int64_t n) {
  using A = acc_t<T>;
  for (int64_t i = thread_index(); i < n; i += thread_count()) {
    const A g = load(gate + i);
    store(out + i, g / (A(1) + std::exp(-g)) * load(up + i));
  }
}

template <class T>
__global__ void swiglu_backward_kernel(const T* gate, const T* up, const T* grad_out, T* grad_gate, T* grad_up,
                                       int64_t n) {
  using A = acc_t<T>;
  for (int64_t i = thread_index(); i < n; i += thread_count()) {
    const A g = load(gate + i), u = load(up + i), d = load(grad_out + i);
    const A s = A(1) / (A(1) + std::exp(-g));
    // d silu(g)/dg = s * (1 + g * (1 - s))
    store(grad_gate + i, d * u * s * (A(1) + g * (A(1) - s)));
    store(grad_up + i, d * g * s);
  }
}

}  // namespace

void CudaBackend::swiglu(const Tensor& gate, const Tensor& up, const Tensor& out) {
  for (auto [t, what] : {std::pair{&gate, "gate"}, {&up, "up"}, {&out, "out"}})
    check_like("swiglu", gate, "gate", *t, what);
  const int64_t n = gate.numel();
  if (n == 0) return;
  activate();
  dispatch_float(gate.dtype(), "swiglu", [&](auto tag) {
    using T = decltype(tag);
    launch<swiglu_kernel<T>>(LaunchShape{blocks_for(n), kThreads, 0, stream_}, static_cast<const T*>(gate.data_ptr()),
                             static_cast<const T*>(up.data_ptr()), static_cast<T*>(out.data_ptr()), n);
  });
}

void CudaBackend::swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& grad_out, const Tensor& grad_gate,
                                  const Tensor& grad_up) {
  for (auto [t, what] : {std::pair{&gate, "gate"},
                         {&up, "up"},
                         {&grad_out, "grad_out"},
                         {&grad_gate, "grad_gate"},
                         {&grad_up, "grad_up"}})
    check_like("swiglu_backward", gate, "gate", *t, what);
  const int64_t n = gate.numel();
  if (n == 0) return;
  activate();
  dispatch_float(gate.dtype(), "swiglu_backward", [&](auto tag) {
    using T = decltype(tag);
    launch<swiglu_backward_kernel<T>>(LaunchShape{blocks_for(n), kThreads, 0, stream_},
                                      static_cast<const T*>(gate.data_ptr()), static_cast<const T*>(up.data_ptr()),
                                      static_cast<const T*>(grad_out.data_ptr()), static_cast<T*>(grad_gate.data_ptr()),
                                      static_cast<T*>(grad_up.data_ptr()), n);
  });
}

}  // namespace qtune::gpu
