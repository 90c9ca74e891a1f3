#pragma once
// What a kernel says when it stops on a value that lives on the device (an id, a target; device_util.cuh's
// device_fail). A trapped kernel leaves the context unusable, so the text cannot be copied back afterwards
// and a GPU's printf buffer is lost with it: the kernel writes into pinned host memory, which the device
// reaches through the same address (unified addressing) and which outlives the context.
#include <cuda_runtime.h>

#include <string>

namespace qtune::gpu {

struct DeviceFault {
  unsigned int claimed;  // 0 free, 1 taken by the first failing thread, 2 its text written
  char text[252];        // NUL-terminated
};

// The process's record (allocated on first use; every device writes the same one). Kernels that may fail
// take it as an argument.
DeviceFault* device_fault_record();
// The record's text once a kernel wrote it, else "".
std::string device_fault_text();
// "CUDA error <name>: <description>", with what a stopped kernel said when the error is the fault it left.
std::string cuda_error_message(cudaError_t status);

}  // namespace qtune::gpu
