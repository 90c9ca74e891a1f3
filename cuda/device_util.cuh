#pragma once
// Shared by the .cu kernel files: element load/store through the engine's scalar numerics (so a
// bf16 rounds on the GPU exactly as on the CPU), dtype dispatch, strided indexing and launch sizes.
#include <cuda_runtime.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <type_traits>

#include "cuda/cuda_check.h"
#include "cuda/launch.cuh"
#include "cuda/shared_memory.cuh"
#include "engine/numerics/element.h"
#include "engine/numerics/fp8.h"
#include "engine/tensor.h"

namespace qtune::gpu {

using numerics::acc_t;
using numerics::dispatch_float;
using numerics::load;
using numerics::store;

constexpr int kMaxRank = 8;

// Element offsets of N operands of one shape, from a linear index over that shape. Dims that are
// contiguous with each other in every operand are merged on the host first, so most views index as
// rank 1 or 2.
template <int N>
struct Indexer {
  int rank = 0;
  int64_t sizes[kMaxRank] = {};
  int64_t strides[N][kMaxRank] = {};

  __device__ __forceinline__ void offsets(int64_t linear, int64_t (&off)[N]) const {
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] = 0;
    for (int d = rank - 1; d >= 0; --d) {
      const int64_t i = linear % sizes[d];
      linear /= sizes[d];
#pragma unroll
      for (int k = 0; k < N; ++k) off[k] += i * strides[k][d];
    }
  }
};

template <int N>
Indexer<N> make_indexer(const char* kernel, const Shape& shape, const std::array<const Strides*, N>& strides) {
  Indexer<N> ix;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = ix.rank > 0;
    for (int k = 0; k < N && merge; ++k) merge = ix.strides[k][ix.rank - 1] == (*strides[k])[d] * shape[d];
    if (merge) {
      ix.sizes[ix.rank - 1] *= shape[d];
      for (int k = 0; k < N; ++k) ix.strides[k][ix.rank - 1] = (*strides[k])[d];
      continue;
    }
    QTUNE_CHECK(ix.rank < kMaxRank, kernel, ": views of more than ", kMaxRank,
                " non-mergeable dims are not supported on CUDA (shape ", shape_str(shape), ")");
    ix.sizes[ix.rank] = shape[d];
    for (int k = 0; k < N; ++k) ix.strides[k][ix.rank] = (*strides[k])[d];
    ++ix.rank;
  }
  return ix;
}

// Grid-stride launches: enough blocks to fill any current GPU, few enough that each thread loops.
constexpr int kThreads = 256;
inline unsigned blocks_for(int64_t work) {
  const int64_t blocks = (work + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > 8192 ? 8192 : blocks));
}

__device__ __forceinline__ int64_t thread_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t thread_count() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

// A 16-byte chunk of T for vectorized loads and stores.
template <class T>
struct alignas(16) Pack {
  static constexpr int size = 16 / sizeof(T);
  T v[size];
};

inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Pack i of an array of T; the address must be 16-byte aligned, as the GPU's vector loads require.
template <class T>
__device__ __forceinline__ Pack<T> load_pack(const T* base, int64_t i) {
  const Pack<T>* p = reinterpret_cast<const Pack<T>*>(base) + i;
#if defined(QTUNE_CUDA_SIM)
  sim::check_vector_access(p, sizeof(Pack<T>), "a 16-byte vector load");
#endif
  return *p;
}

template <class T>
__device__ __forceinline__ void store_pack(T* base, int64_t i, const Pack<T>& value) {
  Pack<T>* p = reinterpret_cast<Pack<T>*>(base) + i;
#if defined(QTUNE_CUDA_SIM)
  sim::check_vector_access(p, sizeof(Pack<T>), "a 16-byte vector store");
#endif
  *p = value;
}

// Stops the kernel when a value that lives on the device (an id, a target) is out of range: the host
// cannot check it without waiting for the GPU. The stream's next synchronize reports a sticky launch
// failure; the simulator puts `format`'s text in that error, a GPU prints it to stdout.
template <class... Args>
__device__ void device_fail(const char* format, Args... args) {
#if defined(QTUNE_CUDA_SIM)
  char text[256];
  std::snprintf(text, sizeof text, format, args...);
  sim::device_fault(cudaErrorLaunchFailure, text);
#else
  printf(format, args...);
  __trap();
#endif
}

// Grid size for kernels that give one row to one block (grid-striding past the limit).
inline unsigned blocks_for_rows(int64_t rows) {
  constexpr int64_t max_blocks = 65535;
  return static_cast<unsigned>(rows < 1 ? 1 : (rows < max_blocks ? rows : max_blocks));
}

}  // namespace qtune::gpu
