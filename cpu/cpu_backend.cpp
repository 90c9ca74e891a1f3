// The CPU backend's registration with the engine (engine/backend_registry.h).
#include "cpu/cpu_backend.h"

#include "engine/backend_registry.h"

namespace qtune::cpu {
namespace {

Backend& the_cpu_backend(int index) {
  QTUNE_CHECK(index == 0, "device cpu:", index, " does not exist (the CPU is one device)");
  static CpuBackend instance;
  return instance;
}

const bool registered = register_backend(DeviceType::cpu, {[] { return 1; }, the_cpu_backend});

}  // namespace
}  // namespace qtune::cpu

// Referenced by the linker option qtune's CMake target carries, so that a static libqtune keeps this object
// (and with it the registration above) in every program.
extern "C" const bool* qtune_cpu_backend_anchor() { return &qtune::cpu::registered; }
