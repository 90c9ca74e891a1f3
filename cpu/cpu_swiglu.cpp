// Fused SwiGLU: silu(gate) * up in one pass (and both gradients in one pass), so the MLP never
// materializes silu(gate).
#include "cpu/cpu_backend.h"
#include "cpu/kernel_util.h"
#include "cpu/vec_exp.h"

namespace qtune::cpu {
namespace {

constexpr int64_t kGrain = 1 << 14;

}  // namespace

void CpuBackend::swiglu(const Tensor& gate, const Tensor& up, const Tensor& out) {
  check_like("swiglu", gate, "gate", gate, "gate");
  check_like("swiglu", gate, "gate", up, "up");
  check_like("swiglu", gate, "gate", out, "out");
  dispatch_float(gate.dtype(), "swiglu", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const T* pg = ptr<T>(gate);
    const T* pu = ptr<T>(up);
    T* po = ptr<T>(out);
    parallel_for(gate.numel(), kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const A g = load(pg + i);
        store(po + i, g / (A(1) + vec_exp(-g)) * load(pu + i));
      }
    });
  });
}

void CpuBackend::swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& grad_out, const Tensor& grad_gate,
                                 const Tensor& grad_up) {
  check_like("swiglu_backward", gate, "gate", gate, "gate");
  check_like("swiglu_backward", gate, "gate", up, "up");
  check_like("swiglu_backward", gate, "gate", grad_out, "grad_out");
  check_like("swiglu_backward", gate, "gate", grad_gate, "grad_gate");
  check_like("swiglu_backward", gate, "gate", grad_up, "grad_up");
  dispatch_float(gate.dtype(), "swiglu_backward", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const T* pg = ptr<T>(gate);
    const T* pu = ptr<T>(up);
    const T* pd = ptr<T>(grad_out);
    T* pgg = ptr<T>(grad_gate);
    T* pgu = ptr<T>(grad_up);
    parallel_for(gate.numel(), kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const A g = load(pg + i), u = load(pu + i), d = load(pd + i);
        const A s = A(1) / (A(1) + vec_exp(-g));
        // d silu(g)/dg = s * (1 + g * (1 - s))
        store(pgg + i, d * u * s * (A(1) + g * (A(1) - s)));
        store(pgu + i, d * g * s);
      }
    });
  });
}

}  // namespace qtune::cpu
