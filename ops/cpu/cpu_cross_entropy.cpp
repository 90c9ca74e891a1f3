// PLACEHOLDER: being implemented; replace this whole file.
#include "ops/cpu/cpu_backend.h"

namespace qtune::cpu {

void CpuBackend::cross_entropy(const Tensor&, const Tensor&, int64_t, const Tensor&, const Tensor&) { unsupported("cross_entropy"); }
void CpuBackend::cross_entropy_backward(const Tensor&, const Tensor&, int64_t, const Tensor&, const Tensor&, const Tensor&) { unsupported("cross_entropy_backward"); }

}  // namespace qtune::cpu
