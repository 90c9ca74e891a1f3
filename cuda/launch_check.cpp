#include <cstdlib>
#include <cstring>

#include "cuda/cuda_check.h"
#include "cuda/launch.cuh"

namespace qtune::gpu::detail {
namespace {

// Read at every launch (a getenv is nothing next to a launch), so a program or test may turn it on late.
bool sync_after_each_launch() {
  const char* v = std::getenv("QTUNE_CUDA_SYNC");
  return v != nullptr && std::strcmp(v, "") != 0 && std::strcmp(v, "0") != 0;
}

}  // namespace

std::string kernel_name_from(const char* pretty_function) {
  std::string text = pretty_function;
  const size_t at = text.find("Kernel = ");
  if (at == std::string::npos) return text;
  text = text.substr(at + 9);
  const size_t end = text.find_first_of(";]");
  if (end != std::string::npos) text.resize(end);
  for (const char* noise : {"&", "qtune::gpu::", "{anonymous}::", "(anonymous namespace)::"}) {
    for (size_t p = text.find(noise); p != std::string::npos; p = text.find(noise)) text.erase(p, std::strlen(noise));
  }
  return text;
}

void check_launch(const std::string& kernel, cudaStream_t stream) {
  const cudaError_t launched = cudaGetLastError();
  if (launched != cudaSuccess)
    QTUNE_FAIL("CUDA kernel ", kernel, " failed to launch: ", cudaGetErrorName(launched), ": ",
               cudaGetErrorString(launched));
  if (!sync_after_each_launch()) return;
  const cudaError_t ran = cudaStreamSynchronize(stream);
  if (ran != cudaSuccess)
    QTUNE_FAIL("CUDA kernel ", kernel,
               " failed (QTUNE_CUDA_SYNC=1 waits after each launch): ", cuda_error_message(ran));
}

}  // namespace qtune::gpu::detail
