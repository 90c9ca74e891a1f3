#pragma once
// `qtune bench gemm`: times qtune's CPU GEMM (Backend::gemm on Tensors) beside the GEMM libraries'
// own entry points called directly, and prints GFLOP/s and qtune's share of the fastest library.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace qtune::bench {

struct GemmBenchOptions {
  // {M, N, K}: C[M, N] = A[M, K] @ B[N, K]^T (the layout of a linear layer's forward pass: B is the
  // [out, in] weight). Empty means the defaults: 4096^3 and the Llama-7B projections at 2048 tokens,
  // 2048x4096x4096 (attention) and 2048x11008x4096 (MLP up/gate).
  std::vector<std::array<int64_t, 3>> shapes;
  int repeats = 5;            // timed runs per library and shape; best and median are reported
  int warmup = 1;             // untimed runs first (page faults, thread pools, library dispatch)
  std::string dtype = "f32";  // qtune's operand dtype: f32, f64, bf16 or f16 (the libraries run f32)
};

// Prints the table to stdout; returns 0, or 1 when the options are invalid (the message goes to stderr).
int run_gemm_bench(const GemmBenchOptions& options);

}  // namespace qtune::bench
