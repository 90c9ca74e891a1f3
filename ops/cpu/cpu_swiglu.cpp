// PLACEHOLDER: being implemented; replace this whole file.
#include "ops/cpu/cpu_backend.h"

namespace qtune::cpu {

void CpuBackend::swiglu(const Tensor&, const Tensor&, const Tensor&) { unsupported("swiglu"); }
void CpuBackend::swiglu_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&) { unsupported("swiglu_backward"); }

}  // namespace qtune::cpu
