#pragma once
// What simulated device code asks of the block scheduler (cuda/sim/block_scheduler.cpp): where the
// calling thread is, barriers, warp collectives, shared memory and faults. Called only from inside a
// running kernel; device_builtins.h wraps these into the CUDA names.
#include <cstddef>
#include <cstdint>
#include <string>

#include <driver_types.h>
#include <vector_types.h>

namespace qtune::sim {

struct ThreadPosition {
  uint3 thread_idx;
  uint3 block_idx;
  dim3 block_dim;
  dim3 grid_dim;
};

// The position of the simulated thread running on this OS thread.
const ThreadPosition& position();

enum class WarpOp { shfl, shfl_up, shfl_down, shfl_xor, ballot, any, all, sync };

// __syncthreads and its counting form: returns how many threads passed a non-zero predicate.
int block_barrier(int predicate);
// Every warp collective: waits until each lane of `mask` arrives with the same op and mask, then
// returns this lane's result (a shuffled value's bits, or a vote).
uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t value, int arg, int width);
// Lanes of the calling thread's warp that have not exited.
unsigned active_mask();

// Storage for one static __shared__ array of the block, keyed by its declaration.
void* static_shared(const char* file, int line, size_t bytes, size_t alignment);
// The block's dynamic shared memory (the launch's shared-memory size).
void* dynamic_shared();

// Stops the kernel with a fault naming it, the block and the thread; the launch's stream reports `code`.
// The calling thread unwinds to where it started; the others are not run again.
[[noreturn]] void device_fault(cudaError_t code, const std::string& what);
// A vector access of `bytes` bytes must be aligned to its size, as on the GPU.
void check_vector_access(const void* address, size_t bytes, const char* what);

}  // namespace qtune::sim
