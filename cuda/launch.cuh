#pragma once
// The one way qtune launches a kernel: launch<kernel>(LaunchShape{grid, block, shared, stream}, args...).
// The real flavor expands to the triple-chevron launch; the sim flavor (QTUNE_CUDA=SIM) hands the
// kernel to the simulator, which runs every block and thread on the CPU. Either way a bad launch is
// reported here, naming the kernel, and with QTUNE_CUDA_SYNC=1 every launch is also waited for, so an
// error inside a kernel is reported at the launch that caused it rather than at a later call.
#include <cuda_runtime.h>

#include <string>
#include <utility>

#if defined(QTUNE_CUDA_SIM)
#include "cuda/sim/launch.h"
#endif

namespace qtune::gpu {

struct LaunchShape {
  dim3 grid;
  dim3 block;
  size_t shared_bytes = 0;
  cudaStream_t stream = nullptr;
};

namespace detail {
// "qtune::gpu::{anonymous}::copy_kernel" from a __PRETTY_FUNCTION__ naming the template argument.
std::string kernel_name_from(const char* pretty_function);
void check_launch(const std::string& kernel, cudaStream_t stream);
}  // namespace detail

template <auto Kernel>
const std::string& kernel_name() {
  static const std::string name = detail::kernel_name_from(__PRETTY_FUNCTION__);
  return name;
}

template <auto Kernel, class... Args>
void launch(const LaunchShape& shape, Args&&... args) {
#if defined(QTUNE_CUDA_SIM)
  sim::launch_kernel<Kernel>(kernel_name<Kernel>(), shape.grid, shape.block, shape.shared_bytes, shape.stream,
                             std::forward<Args>(args)...);
#else
  Kernel<<<shape.grid, shape.block, shape.shared_bytes, shape.stream>>>(std::forward<Args>(args)...);
#endif
  detail::check_launch(kernel_name<Kernel>(), shape.stream);
}

}  // namespace qtune::gpu
