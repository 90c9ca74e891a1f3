// Throughput of the CUDA backend's GEMM (cuBLASLt) on Llama-sized shapes: the measured peak that
// model FLOP utilization is reported against. Prints one line per shape; exits 77 without a GPU.
//
//   cuda_gemm_bench [seconds per shape, default 0.5]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "engine/backend.h"

using namespace qtune;

namespace {

struct Shape3 {
  int64_t m, n, k;
  DType dtype;
};

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (!cuda_available()) {
    std::printf("SKIPPED: no CUDA device\n");
    return 77;
  }
  const double budget = argc > 1 ? std::atof(argv[1]) : 0.5;
  const Device dev = Device::cuda(0);
  Backend& gpu = backend_for(dev);
  // y = x W^T of a linear layer (b transposed), as the model runs it: 8192 tokens through Llama-3-8B's
  // attention (4096 -> 4096) and MLP (4096 -> 14336) projections, plus a square f32 reference.
  const Shape3 shapes[] = {{4096, 4096, 4096, DType::bf16},
                           {8192, 4096, 4096, DType::bf16},
                           {8192, 14336, 4096, DType::bf16},
                           {8192, 4096, 14336, DType::bf16},
                           {4096, 4096, 4096, DType::f32}};
  std::printf("%-5s %6s %6s %6s %10s %10s\n", "dtype", "m", "n", "k", "ms/iter", "TFLOP/s");
  for (const Shape3& s : shapes) {
    const Tensor a = Tensor::empty({1, s.m, s.k}, s.dtype, dev);
    const Tensor b = Tensor::empty({1, s.n, s.k}, s.dtype, dev);
    const Tensor c = Tensor::empty({1, s.m, s.n}, s.dtype, dev);
    gpu.fill_uniform(a, 1, 0, -1.0, 1.0);
    gpu.fill_uniform(b, 2, 0, -1.0, 1.0);
    for (int i = 0; i < 3; ++i) gpu.gemm(a, false, b, true, c, 1.0, 0.0);  // plan, heuristic, clocks
    gpu.synchronize();
    int64_t iters = 0;
    const auto start = std::chrono::steady_clock::now();
    double elapsed = 0.0;
    while (elapsed < budget) {
      for (int i = 0; i < 5; ++i) gpu.gemm(a, false, b, true, c, 1.0, 0.0);
      gpu.synchronize();
      iters += 5;
      elapsed = seconds_since(start);
    }
    const double per_iter = elapsed / static_cast<double>(iters);
    const double flops = 2.0 * static_cast<double>(s.m) * static_cast<double>(s.n) * static_cast<double>(s.k);
    std::printf("%-5s %6lld %6lld %6lld %10.3f %10.1f\n", std::string(dtype_name(s.dtype)).c_str(),
                static_cast<long long>(s.m), static_cast<long long>(s.n), static_cast<long long>(s.k), per_iter * 1e3,
                flops / per_iter / 1e12);
  }
  return 0;
}
