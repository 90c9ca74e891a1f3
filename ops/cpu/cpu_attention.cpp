// PLACEHOLDER: being implemented; replace this whole file.
#include "ops/cpu/cpu_backend.h"

namespace qtune::cpu {

void CpuBackend::attention(const Tensor&, const Tensor&, const Tensor&, double, bool, const Tensor&, const Tensor&) { unsupported("attention"); }
void CpuBackend::attention_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, double, bool, const Tensor&, const Tensor&, const Tensor&) { unsupported("attention_backward"); }

}  // namespace qtune::cpu
