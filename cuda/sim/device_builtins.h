#pragma once
// The device side of the CUDA language for the sim flavor: the function-space keywords, the built-in
// index variables, barriers, warp shuffles and votes, atomics and __ldg, with the semantics the CUDA
// programming guide gives them. Shared memory is declared through QTUNE_SHARED (cuda/shared_memory.cuh),
// so that the simulator can give each block fresh, garbage-filled storage of the declared size.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cuda/sim/thread_api.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
// Plain __shared__ would make one copy per OS thread shared by every block: declare with QTUNE_SHARED.
#define __shared__ qtune_sim_declare_shared_memory_with_QTUNE_SHARED

#define threadIdx (::qtune::sim::position().thread_idx)
#define blockIdx (::qtune::sim::position().block_idx)
#define blockDim (::qtune::sim::position().block_dim)
#define gridDim (::qtune::sim::position().grid_dim)
constexpr int warpSize = 32;
// CUDA's math library declares these in the global namespace for device code.
using std::isfinite;
using std::isinf;
using std::isnan;

inline void __syncthreads() { ::qtune::sim::block_barrier(0); }
inline int __syncthreads_count(int predicate) { return ::qtune::sim::block_barrier(predicate != 0); }
inline int __syncthreads_and(int predicate) {
  const auto& p = ::qtune::sim::position();
  return ::qtune::sim::block_barrier(predicate != 0) == static_cast<int>(p.block_dim.x * p.block_dim.y * p.block_dim.z);
}
inline int __syncthreads_or(int predicate) { return ::qtune::sim::block_barrier(predicate != 0) > 0; }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  ::qtune::sim::warp_collective(::qtune::sim::WarpOp::sync, mask, 0, 0, 32);
}
inline unsigned __activemask() { return ::qtune::sim::active_mask(); }
// One OS thread runs a kernel, so memory is already ordered between simulated threads.
inline void __threadfence() {}
inline void __threadfence_block() {}

namespace qtune::sim::detail {

template <class T>
uint64_t to_bits(T v) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "warp shuffles move at most 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof v);
  return bits;
}

template <class T>
T from_bits(uint64_t bits) {
  T v;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}

template <class T>
T shuffle(WarpOp op, unsigned mask, T var, int arg, int width) {
  return from_bits<T>(warp_collective(op, mask, to_bits(var), arg, width));
}

}  // namespace qtune::sim::detail

template <class T>
T __shfl_sync(unsigned mask, T var, int src_lane, int width = warpSize) {
  return ::qtune::sim::detail::shuffle(::qtune::sim::WarpOp::shfl, mask, var, src_lane, width);
}
template <class T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {
  return ::qtune::sim::detail::shuffle(::qtune::sim::WarpOp::shfl_up, mask, var, static_cast<int>(delta), width);
}
template <class T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {
  return ::qtune::sim::detail::shuffle(::qtune::sim::WarpOp::shfl_down, mask, var, static_cast<int>(delta), width);
}
template <class T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize) {
  return ::qtune::sim::detail::shuffle(::qtune::sim::WarpOp::shfl_xor, mask, var, lane_mask, width);
}
inline unsigned __ballot_sync(unsigned mask, int predicate) {
  return static_cast<unsigned>(
      ::qtune::sim::warp_collective(::qtune::sim::WarpOp::ballot, mask, predicate != 0, 0, 32));
}
inline int __any_sync(unsigned mask, int predicate) {
  return static_cast<int>(::qtune::sim::warp_collective(::qtune::sim::WarpOp::any, mask, predicate != 0, 0, 32));
}
inline int __all_sync(unsigned mask, int predicate) {
  return static_cast<int>(::qtune::sim::warp_collective(::qtune::sim::WarpOp::all, mask, predicate != 0, 0, 32));
}

template <class T>
T __ldg(const T* p) {
  return *p;
}

// Atomics: the simulated threads of a kernel take turns on one OS thread, so a plain read-modify-write
// is atomic with respect to every other thread of the launch.
namespace qtune::sim::detail {
template <class T>
constexpr bool atomic_arith =
    std::is_same_v<T, int> || std::is_same_v<T, unsigned> || std::is_same_v<T, unsigned long long> ||
    std::is_same_v<T, long long> || std::is_same_v<T, float> || std::is_same_v<T, double>;
template <class T>
constexpr bool atomic_int = std::is_same_v<T, int> || std::is_same_v<T, unsigned> ||
                            std::is_same_v<T, unsigned long long> || std::is_same_v<T, long long>;
}  // namespace qtune::sim::detail

template <class T, class = std::enable_if_t<::qtune::sim::detail::atomic_arith<T>>>
T atomicAdd(T* address, T value) {
  const T old = *address;
  *address = old + value;
  return old;
}
template <class T, class = std::enable_if_t<::qtune::sim::detail::atomic_int<T>>>
T atomicSub(T* address, T value) {
  const T old = *address;
  *address = old - value;
  return old;
}
template <class T, class = std::enable_if_t<::qtune::sim::detail::atomic_int<T>>>
T atomicMax(T* address, T value) {
  const T old = *address;
  *address = old < value ? value : old;
  return old;
}
template <class T, class = std::enable_if_t<::qtune::sim::detail::atomic_int<T>>>
T atomicMin(T* address, T value) {
  const T old = *address;
  *address = value < old ? value : old;
  return old;
}
template <class T, class = std::enable_if_t<::qtune::sim::detail::atomic_int<T>>>
T atomicAnd(T* address, T value) {
  const T old = *address;
  *address = old & value;
  return old;
}
template <class T, class = std::enable_if_t<::qtune::sim::detail::atomic_int<T>>>
T atomicOr(T* address, T value) {
  const T old = *address;
  *address = old | value;
  return old;
}
template <class T, class = std::enable_if_t<::qtune::sim::detail::atomic_int<T>>>
T atomicXor(T* address, T value) {
  const T old = *address;
  *address = old ^ value;
  return old;
}
template <class T, class = std::enable_if_t<::qtune::sim::detail::atomic_arith<T>>>
T atomicExch(T* address, T value) {
  const T old = *address;
  *address = value;
  return old;
}
template <class T, class = std::enable_if_t<::qtune::sim::detail::atomic_int<T>>>
T atomicCAS(T* address, T compare, T value) {
  const T old = *address;
  if (old == compare) *address = value;
  return old;
}
