#pragma once
// The simulated runtime's error state, as the CUDA runtime keeps it: a per-host-thread last error that
// cudaGetLastError returns and clears, and a sticky error (a fault inside a kernel) that every later
// call returns, because after a fault the device context is unusable. Each carries a message that
// cudaGetErrorString hands out, so QTUNE_CUDA_CHECK prints which kernel, block and thread faulted.
#include <string>

#include <driver_types.h>

namespace qtune::sim {

// Sets the calling thread's last error; returns code.
cudaError_t fail(cudaError_t code, std::string message);
// Returns and clears the last error (the sticky one when set).
cudaError_t take_last_error();
cudaError_t peek_last_error();

void set_sticky(cudaError_t code, std::string message);
cudaError_t sticky_error();
// Forgets a sticky fault: only the simulator's own self-tests call this, to go on after a planted bug.
void clear_sticky_error();

// The message recorded with code, or nullptr when none is.
const char* message_for(cudaError_t code);

}  // namespace qtune::sim
