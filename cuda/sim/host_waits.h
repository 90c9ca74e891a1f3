#pragma once
// How many times the host has blocked on simulated device work since the process started: every
// synchronize (device, stream, event), blocking copy (cudaMemcpy, a copy into pageable host memory),
// cudaFree and cudaFreeHost, whether or not work was queued -- each is a stall of the host on a GPU.
// Lets a test prove that a training step queues its work without waiting for it.
#include <cstdint>

namespace qtune::sim {

uint64_t host_wait_count();
// Called by the runtime functions above.
void count_host_wait();

}  // namespace qtune::sim
