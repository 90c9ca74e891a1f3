#pragma once
// The simulator's side of a kernel launch: the arguments are copied as CUDA copies them (each thread
// then gets its own copy to modify), pointer arguments are checked to be memory of the stream's
// device, the configuration is checked against the device's limits, and the launch is queued on the
// stream. cuda/launch.cuh calls launch_kernel for the sim flavor.
#include <cuda_runtime.h>

#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

namespace qtune::sim {

// Reports a pointer argument that is neither null nor memory of the stream's device (cudaGetLastError
// returns cudaErrorInvalidValue); false when it does.
bool check_pointer_argument(const std::string& kernel, int index, const void* pointer, cudaStream_t stream);

// Checks the configuration and queues the launch; run_thread(params) is the body of one thread.
void enqueue_kernel(const std::string& kernel, dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream,
                    std::shared_ptr<const void> params, void (*run_thread)(const void* params));

template <class F>
struct KernelSignature;
template <class... P>
struct KernelSignature<void (*)(P...)> {
  using Arguments = std::tuple<std::decay_t<P>...>;
};

template <auto Kernel, class... Args>
void launch_kernel(const std::string& name, dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream,
                   Args&&... args) {
  using Arguments = typename KernelSignature<decltype(Kernel)>::Arguments;
  static_assert(std::tuple_size_v<Arguments> == sizeof...(Args), "a kernel launch passes every argument");
  auto arguments = std::make_shared<const Arguments>(std::forward<Args>(args)...);
  bool ok = true;
  int index = 0;
  std::apply(
      [&](const auto&... value) {
        auto check = [&](const auto& v) {
          if constexpr (std::is_pointer_v<std::decay_t<decltype(v)>>)
            ok = ok && check_pointer_argument(name, index, v, stream);
          ++index;
        };
        (check(value), ...);
      },
      *arguments);
  if (!ok) return;
  enqueue_kernel(name, grid, block, shared_bytes, stream, arguments, [](const void* p) {
    Arguments own = *static_cast<const Arguments*>(p);
    std::apply(Kernel, own);
  });
}

}  // namespace qtune::sim
