#pragma once
// Which backend serves which device type. Each backend (cpu/, cuda/) registers itself from its own
// translation unit during static initialization, so the engine never names a backend and has no
// link-time dependency on one. A static libqtune would let the linker drop such an object, which nothing
// references; qtune's CMake target therefore carries `--undefined=<anchor>` for each backend it was built
// with (CMakeLists.txt, cmake/cuda.cmake), and every program that links qtune::qtune keeps them.
#include "engine/backend.h"
#include "engine/device.h"

namespace qtune {

struct BackendProvider {
  // How many devices of this type the machine has (the CPU: 1).
  int (*device_count)();
  // The backend of device `index`, created on first use and kept for the life of the process. May throw
  // a message that says why the device cannot be used (no driver, index out of range).
  Backend& (*backend)(int index);
};

// Registers the provider of `type`'s devices. A second provider for one type is an error (two backends
// linked for one device type). Returns true, so that a backend can register from a static initializer.
bool register_backend(DeviceType type, BackendProvider provider);

// Devices of `type` this process can use: 0 when no backend for the type is linked.
int device_count(DeviceType type);

}  // namespace qtune
