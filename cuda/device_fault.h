#pragma once
// What a kernel says when it stops on a value that lives on the device (an id, a target; device_util.cuh's
// device_fail). A trapped kernel leaves a sticky error, after which nothing can be copied back and a GPU's
// printf buffer is lost: the kernel writes into mapped pinned host memory instead, which the device reaches
// at its host address and the host reads after the error.
#include <cuda_runtime.h>

#include <string>

namespace qtune::gpu {

struct DeviceFault {
  unsigned int claimed;  // 0 free, 1 taken by the first failing thread, 2 its text written
  char text[252];        // NUL-terminated
};

// Device `index`'s record (all devices' records are allocated together on first use). Kernels that may fail
// take their device's record as an argument.
DeviceFault* device_fault_record(int index);
// The current device's record's text once a kernel wrote it, else "".
std::string device_fault_text();
// "CUDA error <name>: <description>", with what a stopped kernel said when the error is the fault it left.
std::string cuda_error_message(cudaError_t status);

}  // namespace qtune::gpu
