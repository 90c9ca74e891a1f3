#pragma once
// A counter-based generator: state is (seed, offset) where offset counts Philox blocks already
// consumed. Kernels receive (seed, offset) and compute element i independently, so the stream is the
// same on every backend and a checkpoint only needs two integers.
#include <cstdint>

#include "engine/tensor.h"

namespace qtune {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void manual_seed(uint64_t seed) {
    seed_ = seed;
    offset_ = 0;
  }
  void set_state(uint64_t seed, uint64_t offset) {
    seed_ = seed;
    offset_ = offset;
  }
  // Reserves `blocks` Philox blocks and returns the offset of the first.
  uint64_t reserve(uint64_t blocks) {
    const uint64_t first = offset_;
    offset_ += blocks;
    return first;
  }

 private:
  uint64_t seed_;
  uint64_t offset_ = 0;
};

// The process-wide generator used when none is passed.
Generator& default_generator();
void manual_seed(uint64_t seed);

// U[low, high) and N(mean, std) tensors (Philox stream, identical on every backend).
Tensor rand(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu(), Generator* gen = nullptr,
            double low = 0.0, double high = 1.0);
Tensor randn(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu(), Generator* gen = nullptr,
             double mean = 0.0, double std = 1.0);

}  // namespace qtune
