#pragma once
// The simulated machine, read once from the environment:
//   QTUNE_SIM_SEED     order of blocks and of threads between barriers, and shared-memory garbage
//                      (default 1; 0 runs everything in index order)
//   QTUNE_SIM_DEVICES  number of simulated GPUs (default 1, at most 8)
//   QTUNE_SIM_MEMORY_MB  memory of each simulated GPU (default 16384)
//   QTUNE_SIM_NCCL_TIMEOUT_S  how long a rank waits in a collective for the others (default 60; read at
//                      each collective)
//   QTUNE_SIM_NCCL_DIR  where ranks in several processes meet (default /dev/shm, else the temporary directory)
#include <cstddef>
#include <cstdint>
#include <string>

namespace qtune::sim {

uint64_t seed();
// Self-tests pick their own seed.
void set_seed(uint64_t seed);
int device_count();
size_t device_memory_bytes();
int nccl_timeout_seconds();
std::string nccl_directory();

// The properties every simulated GPU reports (an H100-like part).
constexpr int kMaxThreadsPerBlock = 1024;
constexpr size_t kSharedMemoryPerBlock = 48 * 1024;
constexpr int kMultiprocessors = 132;

}  // namespace qtune::sim
