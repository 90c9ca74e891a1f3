#pragma once
// Batched GEMM through cuBLASLt. Row-major C = op(A) op(B) is the column-major product
// C^T = op(B)^T op(A)^T, so B is cuBLASLt's first operand and A its second, each with the layout its
// row-major storage has when read column-major. Descriptors and the heuristic's algorithm are made
// once per problem shape and reused; the workspace is allocated once.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <array>
#include <map>
#include <memory>
#include <mutex>

#include "engine/tensor.h"

namespace qtune::gpu {

// A validated Backend::gemm call: sizes, row strides (ld) and batch strides in elements.
struct GemmProblem {
  DType dtype = DType::f32;                          // c's
  DType a_dtype = DType::f32, b_dtype = DType::f32;  // the operands': c's, or fp8 in an fp8 GEMM
  bool trans_a = false, trans_b = false;
  bool tf32 = false;  // f32 only: inputs rounded to TF32 (CUBLAS_COMPUTE_32F_FAST_TF32)
  // fp8 only: one dequantization factor per row of a and of b (cuBLASLt's outer-vector scaling), not one each.
  bool fp8_row_scales = false;
  int64_t batch = 0, m = 0, n = 0, k = 0;
  int64_t lda = 0, ldb = 0, ldc = 0;
  int64_t batch_stride_a = 0, batch_stride_b = 0, batch_stride_c = 0;
};

// Checks the operands as Backend::gemm documents them; throws naming what disagrees.
GemmProblem check_gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& c);

class LtGemm {
 public:
  explicit LtGemm(int device_index);
  ~LtGemm();
  LtGemm(const LtGemm&) = delete;
  LtGemm& operator=(const LtGemm&) = delete;

  // c = alpha * op(a) @ op(b) + beta * c on `stream`; p.k must be > 0.
  void run(const GemmProblem& p, const void* a, const void* b, void* c, double alpha, double beta, cudaStream_t stream);
  // The fp8 GEMM c[M, N] = (a[M, K] * a_dequant) (b[N, K] * b_dequant)^T with f32 accumulation: p has
  // trans_b set and fp8 a_dtype/b_dtype (the "TN" layout, K-major operands); a_dequant and b_dequant point
  // to f32s on the device, one each or, with p.fp8_row_scales, M and N (cuBLASLt's scales multiply the
  // codes). Returns false, queueing nothing, when cuBLASLt has no algorithm for these shapes, alignments
  // and scales (outer-vector scales need Hopper or newer and cuBLASLt 12.9).
  bool run_fp8(const GemmProblem& p, const void* a, const void* b, void* c, const float* a_dequant,
               const float* b_dequant, cudaStream_t stream);

 private:
  struct Plan;
  using Key = std::array<int64_t, 16>;
  // The cached plan of a problem, made on first use; nullptr when cuBLASLt has no algorithm and
  // `must_exist` is false (true: throws naming the problem).
  // fp8 plans take the dequantization factors' pointers (ours of a and b) before cuBLASLt picks an algorithm:
  // one picked without scale pointers is refused when the GEMM runs with them (CUBLAS_STATUS_NOT_SUPPORTED,
  // seen on an H200 with cuBLASLt 13.0).
  Plan* plan_for(const GemmProblem& p, const std::array<uint32_t, 3>& alignments, bool must_exist,
                 const float* a_dequant = nullptr, const float* b_dequant = nullptr);

  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  std::mutex mutex_;
  std::map<Key, std::unique_ptr<Plan>> plans_;
};

}  // namespace qtune::gpu
