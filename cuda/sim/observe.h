#pragma once
// What tests can observe of the simulated device that a GPU shows only in a profiler.
#include <cstdint>

namespace qtune::sim {

// How many times the host has blocked on device work since the process started: every synchronize
// (device, stream, event), blocking copy (cudaMemcpy, a copy into pageable host memory), cudaFree and
// cudaFreeHost, whether or not work was queued -- each is a stall of the host on a GPU. Lets a test prove
// that a training step queues its work without waiting for it.
uint64_t host_wait_count();
void count_host_wait();  // called by those runtime functions

// cublasLtMatmul calls with fp8 (e4m3/e5m2) operands so far: proves the fp8 path reaches the tensor cores'
// GEMM rather than a dequantized one.
uint64_t fp8_matmul_count();
void count_fp8_matmul();  // called by cublasLtMatmul

// wmma::mma_sync calls so far, one per lane: proves a kernel takes its tensor-core path.
uint64_t wmma_mma_count();
void count_wmma_mma();  // called by wmma::mma_sync

}  // namespace qtune::sim
