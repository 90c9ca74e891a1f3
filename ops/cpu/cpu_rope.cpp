// PLACEHOLDER: being implemented; replace this whole file.
#include "ops/cpu/cpu_backend.h"

namespace qtune::cpu {

void CpuBackend::rope(const Tensor&, const Tensor&, const Tensor&, bool, const Tensor&) { unsupported("rope"); }

}  // namespace qtune::cpu
