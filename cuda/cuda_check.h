#pragma once
// CUDA runtime and cuBLASLt status checks. A failed call throws qtune::Error naming the call, the
// file and line and the runtime's own description, so a user sees which kernel and why (and, after a
// kernel's device_fail, what it said).
#include <cuda_runtime.h>

#include "cuda/device_fault.h"
#include "engine/check.h"

#define QTUNE_CUDA_CHECK(call)                                                                           \
  do {                                                                                                   \
    const cudaError_t qtune_status_ = (call);                                                            \
    if (qtune_status_ != cudaSuccess)                                                                    \
      ::qtune::detail::fail(__FILE__, __LINE__, #call, ::qtune::gpu::cuda_error_message(qtune_status_)); \
  } while (0)
