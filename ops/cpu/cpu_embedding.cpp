// PLACEHOLDER: being implemented; replace this whole file.
#include "ops/cpu/cpu_backend.h"

namespace qtune::cpu {

void CpuBackend::embedding(const Tensor&, const Tensor&, const Tensor&) { unsupported("embedding"); }
void CpuBackend::embedding_backward(const Tensor&, const Tensor&, const Tensor&) { unsupported("embedding_backward"); }

}  // namespace qtune::cpu
