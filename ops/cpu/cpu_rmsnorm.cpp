// PLACEHOLDER: being implemented; replace this whole file.
#include "ops/cpu/cpu_backend.h"

namespace qtune::cpu {

void CpuBackend::rmsnorm(const Tensor&, const Tensor&, double, const Tensor&, const Tensor&) { unsupported("rmsnorm"); }
void CpuBackend::rmsnorm_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&) { unsupported("rmsnorm_backward"); }

}  // namespace qtune::cpu
