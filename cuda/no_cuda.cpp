// Compiled instead of the CUDA backend when qtune is configured without CUDA.
#include "engine/backend.h"

namespace qtune {

int cuda_device_count() { return 0; }

namespace detail {
Backend* cuda_backend(int) { return nullptr; }
}  // namespace detail

}  // namespace qtune
