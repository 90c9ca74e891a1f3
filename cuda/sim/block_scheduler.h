#pragma once
// Runs one kernel launch on the calling OS thread: every block of the grid, one after another in an
// order drawn from the seed, and every thread of a block as a fiber that runs until it reaches a
// barrier or a warp collective. Between barriers the order of threads is drawn from the seed too, so
// a missing __syncthreads or a read-before-write race changes what a kernel computes.
#include <cstdint>
#include <string>

#include <driver_types.h>
#include <vector_types.h>

namespace qtune::sim {

struct KernelRun {
  std::string name;
  dim3 grid, block;
  size_t dynamic_shared_bytes = 0;
  size_t shared_limit_bytes = 0;  // static plus dynamic shared memory one block may use
  void (*run_thread)(const void* params) = nullptr;
  const void* params = nullptr;
};

struct Fault {
  cudaError_t code = cudaSuccess;
  std::string message;
  explicit operator bool() const { return code != cudaSuccess; }
};

// seed 0 runs blocks and threads in index order; any other seed shuffles both, differently for each
// launch index (the kernel's place in its stream, so that a run is reproducible).
Fault run_kernel(const KernelRun& kernel, uint64_t seed, uint64_t launch);

// The kernel, block and thread running on this OS thread, for sanitizer reports; empty outside kernels.
std::string where_running();

}  // namespace qtune::sim
