#pragma once
// QTUNE_HD marks scalar math that must compile for both host and device: the CPU kernels, the CUDA
// kernels and the tests all call the same functions, so CPU tests cover the math the GPU runs.
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define QTUNE_HD __host__ __device__ __forceinline__
#else
#define QTUNE_HD inline
#endif

namespace qtune::numerics {

QTUNE_HD uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

QTUNE_HD float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

}  // namespace qtune::numerics
