#include "ops/cpu/cpu_backend.h"

namespace qtune::detail {

Backend& cpu_backend() {
  static cpu::CpuBackend instance;
  return instance;
}

}  // namespace qtune::detail
