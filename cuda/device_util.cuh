#pragma once
// Shared by the .cu kernel files: element load/store through the engine's scalar numerics (so a
// bf16 rounds on the GPU exactly as on the CPU), dtype dispatch, strided indexing and launch sizes.
#include <cuda_runtime.h>

#include <array>
#include <cstdint>
#include <type_traits>

#include "cuda/cuda_check.h"
#include "engine/numerics/bf16.h"
#include "engine/numerics/f16.h"
#include "engine/numerics/fp8.h"
#include "engine/tensor.h"

namespace qtune::gpu {

// Arithmetic type for a storage type: f64 stays f64, every other float computes in f32 (as on CPU).
template <class T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <class T>
__host__ __device__ __forceinline__ acc_t<T> load(const T* p) {
  if constexpr (std::is_same_v<T, bf16_t>)
    return numerics::bf16_bits_to_f32(p->bits);
  else if constexpr (std::is_same_v<T, f16_t>)
    return numerics::f16_bits_to_f32(p->bits);
  else
    return *p;
}

template <class T, class V>
__host__ __device__ __forceinline__ void store(T* p, V v) {
  if constexpr (std::is_same_v<T, bf16_t>)
    p->bits = numerics::f32_to_bf16_bits(static_cast<float>(v));
  else if constexpr (std::is_same_v<T, f16_t>)
    p->bits = numerics::f32_to_f16_bits(static_cast<float>(v));
  else
    *p = static_cast<T>(v);
}

// Calls f(T{}) with T the storage type of a floating dtype the kernels compute on.
template <class F>
decltype(auto) dispatch_float(DType t, const char* kernel, F&& f) {
  switch (t) {
    case DType::f64:
      return f(double{});
    case DType::f32:
      return f(float{});
    case DType::bf16:
      return f(bf16_t{});
    case DType::f16:
      return f(f16_t{});
    default:
      QTUNE_FAIL(kernel, ": dtype ", dtype_name(t), " is not supported (expected f64, f32, bf16 or f16)");
  }
}

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

}  // namespace qtune::gpu
