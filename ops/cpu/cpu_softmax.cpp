// PLACEHOLDER: being implemented; replace this whole file.
#include "ops/cpu/cpu_backend.h"

namespace qtune::cpu {

void CpuBackend::softmax(const Tensor&, const Tensor&) { unsupported("softmax"); }
void CpuBackend::softmax_backward(const Tensor&, const Tensor&, const Tensor&) { unsupported("softmax_backward"); }
void CpuBackend::log_softmax(const Tensor&, const Tensor&) { unsupported("log_softmax"); }
void CpuBackend::log_softmax_backward(const Tensor&, const Tensor&, const Tensor&) { unsupported("log_softmax_backward"); }

}  // namespace qtune::cpu
