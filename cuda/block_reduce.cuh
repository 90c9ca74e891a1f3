#pragma once
// Block-wide reductions for kernels that give one row to one block: warp shuffles, then one fixed pass
// over the warps' partials, so the result depends on the block size alone, never on scheduling.
#include "cuda/device_util.cuh"

namespace qtune::gpu {

template <class A>
struct MaxOp {
  __device__ A operator()(A a, A b) const { return a < b ? b : a; }  // as std::max: a NaN b keeps a
};
template <class A>
struct SumOp {
  __device__ A operator()(A a, A b) const { return a + b; }
};

// Every thread of a block of Threads threads gets op over all their values. `partials` is shared
// memory of Threads / 32 values; it may be reused as soon as this returns.
template <int Threads, class A, class Op>
__device__ A block_all_reduce(A value, Op op, A* partials) {
  static_assert(Threads % 32 == 0 && Threads <= 1024, "whole warps, at most 1024 threads");
  constexpr int warps = Threads / 32;
  for (int offset = 16; offset > 0; offset /= 2) value = op(value, __shfl_xor_sync(0xffffffffu, value, offset));
  if (threadIdx.x % 32 == 0) partials[threadIdx.x / 32] = value;
  __syncthreads();
  A total = partials[0];
  for (int w = 1; w < warps; ++w) total = op(total, partials[w]);
  __syncthreads();  // before the next reduction overwrites the partials
  return total;
}

// Every lane of the warp gets op over the 32 lanes' values.
template <class A, class Op>
__device__ A warp_all_reduce(A value, Op op) {
  for (int offset = 16; offset > 0; offset /= 2) value = op(value, __shfl_xor_sync(0xffffffffu, value, offset));
  return value;
}

}  // namespace qtune::gpu
