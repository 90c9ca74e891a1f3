#include "engine/rng.h"

#include "engine/backend.h"
#include "engine/numerics/philox.h"

namespace qtune {

Generator& default_generator() {
  static Generator instance(0);
  return instance;
}

void manual_seed(uint64_t seed) { default_generator().manual_seed(seed); }

Tensor rand(const Shape& shape, DType dtype, Device device, Generator* gen, double low, double high) {
  Generator& g = gen != nullptr ? *gen : default_generator();
  Tensor out = Tensor::empty(shape, dtype, device);
  const uint64_t offset = g.reserve(numerics::philox_blocks_for_uniform(static_cast<uint64_t>(out.numel())));
  backend_for(device).fill_uniform(out, g.seed(), offset, low, high);
  return out;
}

Tensor randn(const Shape& shape, DType dtype, Device device, Generator* gen, double mean, double std) {
  Generator& g = gen != nullptr ? *gen : default_generator();
  Tensor out = Tensor::empty(shape, dtype, device);
  const uint64_t offset = g.reserve(numerics::philox_blocks_for_normal(static_cast<uint64_t>(out.numel())));
  backend_for(device).fill_normal(out, g.seed(), offset, mean, std);
  return out;
}

}  // namespace qtune
