#include "cuda/cublaslt_gemm.h"

#include <memory>
#include <type_traits>

#include "cuda/cuda_check.h"

#define QTUNE_CUBLAS_CHECK(call)                                                                                   \
  do {                                                                                                             \
    const cublasStatus_t qtune_status_ = (call);                                                                   \
    if (qtune_status_ != CUBLAS_STATUS_SUCCESS)                                                                    \
      ::qtune::detail::fail(__FILE__, __LINE__, #call,                                                             \
                            ::qtune::detail::concat("cuBLASLt error ", cublasLtGetStatusName(qtune_status_), ": ", \
                                                    cublasLtGetStatusString(qtune_status_)));                      \
  } while (0)

namespace qtune::gpu {
namespace {

// H100 kernels use up to 32 MiB of workspace for split-K and stream-K schedules.
constexpr size_t kWorkspaceBytes = size_t{32} << 20;

struct LtTypes {
  cudaDataType_t data;
  cublasComputeType_t compute;
  cudaDataType_t scale;
};

cudaDataType_t fp8_type(DType t) {
  QTUNE_CHECK(t == DType::f8_e4m3 || t == DType::f8_e5m2, "fp8 GEMM: operands must be f8_e4m3 or f8_e5m2, got ",
              dtype_name(t));
  return t == DType::f8_e4m3 ? CUDA_R_8F_E4M3 : CUDA_R_8F_E5M2;
}

LtTypes lt_types(DType t, bool tf32) {
  switch (t) {
    // CUBLAS_COMPUTE_32F unless TF32 was asked for: f32 GEMMs stay exact f32 so they match the CPU.
    case DType::f32:
      return {CUDA_R_32F, tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F, CUDA_R_32F};
    case DType::bf16:
      return {CUDA_R_16BF, CUBLAS_COMPUTE_32F, CUDA_R_32F};
    case DType::f16:
      return {CUDA_R_16F, CUBLAS_COMPUTE_32F, CUDA_R_32F};
    case DType::f64:
      return {CUDA_R_64F, CUBLAS_COMPUTE_64F, CUDA_R_64F};
    default:
      QTUNE_FAIL("gemm: dtype ", dtype_name(t), " is not supported on CUDA (expected f64, f32, bf16 or f16)");
  }
}

// The largest power of two (at most 256) dividing every batch's address: what cuBLASLt's alignment
// preferences ask for.
uint32_t alignment_of(const void* ptr, int64_t batch_stride_bytes) {
  uint64_t bits = reinterpret_cast<uintptr_t>(ptr) | static_cast<uint64_t>(batch_stride_bytes) | 256u;
  return static_cast<uint32_t>(bits & (~bits + 1));
}

cublasLtMatrixLayout_t make_layout(cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld, int64_t batch,
                                   int64_t batch_stride) {
  cublasLtMatrixLayout_t layout = nullptr;
  QTUNE_CUBLAS_CHECK(
      cublasLtMatrixLayoutCreate(&layout, type, static_cast<uint64_t>(rows), static_cast<uint64_t>(cols), ld));
  if (batch > 1) {
    const int32_t count = static_cast<int32_t>(batch);
    QTUNE_CUBLAS_CHECK(
        cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof count));
    QTUNE_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                                        &batch_stride, sizeof batch_stride));
  }
  return layout;
}

}  // namespace

GemmProblem check_gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& c) {
  QTUNE_CHECK(a.dim() == 3 && b.dim() == 3 && c.dim() == 3, "gemm: operands must be [batch, rows, cols], got ",
              shape_str(a.shape()), ", ", shape_str(b.shape()), ", ", shape_str(c.shape()));
  GemmProblem p;
  p.dtype = p.a_dtype = p.b_dtype = c.dtype();
  p.trans_a = trans_a;
  p.trans_b = trans_b;
  p.batch = c.size(0);
  p.m = c.size(1);
  p.n = c.size(2);
  p.k = trans_a ? a.size(1) : a.size(2);
  QTUNE_CHECK((trans_a ? a.size(2) : a.size(1)) == p.m && (trans_b ? b.size(2) : b.size(1)) == p.k &&
                  (trans_b ? b.size(1) : b.size(2)) == p.n && a.size(0) == p.batch && b.size(0) == p.batch,
              "gemm: shapes do not agree: a ", shape_str(a.shape()), (trans_a ? "^T" : ""), ", b ",
              shape_str(b.shape()), (trans_b ? "^T" : ""), ", c ", shape_str(c.shape()));
  QTUNE_CHECK(a.dtype() == c.dtype() && b.dtype() == c.dtype(), "gemm: operand dtypes differ (", dtype_name(a.dtype()),
              ", ", dtype_name(b.dtype()), ", ", dtype_name(c.dtype()), ")");
  for (const Tensor* t : {&a, &b, &c})
    QTUNE_CHECK(t->stride(2) == 1 || t->size(2) <= 1, "gemm: the last dim of every operand needs stride 1");
  // Row stride; a single-row matrix may carry any stride there, so use its width.
  auto ld = [](const Tensor& t) {
    const int64_t width = t.size(2) > 0 ? t.size(2) : 1;
    if (t.size(1) <= 1 || t.numel() == 0) return width;
    QTUNE_CHECK(t.stride(1) >= width, "gemm: rows of an operand overlap (row stride ", t.stride(1), ", width ", width,
                ")");
    return t.stride(1);
  };
  p.lda = ld(a);
  p.ldb = ld(b);
  p.ldc = ld(c);
  if (p.batch > 1) {
    p.batch_stride_a = a.stride(0);
    p.batch_stride_b = b.stride(0);
    p.batch_stride_c = c.stride(0);
    QTUNE_CHECK(p.batch_stride_c != 0, "gemm: c cannot be shared by the batch (batch stride 0)");
  }
  return p;
}

struct LtGemm::Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;  // cuBLASLt's A, B, C (= D)
  cublasLtMatmulAlgo_t algo{};

  ~Plan() {
    if (c != nullptr) cublasLtMatrixLayoutDestroy(c);
    if (b != nullptr) cublasLtMatrixLayoutDestroy(b);
    if (a != nullptr) cublasLtMatrixLayoutDestroy(a);
    if (op != nullptr) cublasLtMatmulDescDestroy(op);
  }
};

LtGemm::LtGemm(int device_index) {
  QTUNE_CUDA_CHECK(cudaSetDevice(device_index));
  QTUNE_CUBLAS_CHECK(cublasLtCreate(&handle_));
  QTUNE_CUDA_CHECK(cudaMalloc(&workspace_, kWorkspaceBytes));
  workspace_bytes_ = kWorkspaceBytes;
}

LtGemm::~LtGemm() {
  plans_.clear();
  if (workspace_ != nullptr) cudaFree(workspace_);
  if (handle_ != nullptr) cublasLtDestroy(handle_);
}

LtGemm::Plan* LtGemm::plan_for(const GemmProblem& p, const std::array<uint32_t, 3>& alignments, bool must_exist,
                               const float* a_dequant, const float* b_dequant) {
  const Key key = {static_cast<int64_t>(p.dtype) | (p.trans_a ? 256 : 0) | (p.trans_b ? 512 : 0) |
                       (static_cast<int64_t>(p.a_dtype) << 10) | (static_cast<int64_t>(p.b_dtype) << 18),
                   p.batch,
                   p.m,
                   p.n,
                   p.k,
                   p.lda,
                   p.ldb,
                   p.ldc,
                   p.batch_stride_a,
                   p.batch_stride_b,
                   p.batch_stride_c,
                   alignments[0],
                   alignments[1],
                   alignments[2],
                   p.fp8_row_scales ? 1 : 0,
                   p.tf32 ? 1 : 0};
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second.get();

  const LtTypes types = lt_types(p.dtype, p.tf32);
  const bool fp8 = p.a_dtype != p.dtype;
  const cudaDataType_t type_a = fp8 ? fp8_type(p.a_dtype) : types.data;
  const cudaDataType_t type_b = fp8 ? fp8_type(p.b_dtype) : types.data;
  auto plan = std::make_unique<Plan>();
  QTUNE_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->op, types.compute, types.scale));
  // cuBLASLt's A is our b and its B our a (see the header).
  const cublasOperation_t op_first = p.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_second = p.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  QTUNE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_TRANSA, &op_first, sizeof op_first));
  QTUNE_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_TRANSB, &op_second, sizeof op_second));
  if (p.fp8_row_scales) {
    const int32_t mode = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
    // A cuBLASLt that does not know the mode has no algorithm for it either.
    for (const auto attr : {CUBLASLT_MATMUL_DESC_A_SCALE_MODE, CUBLASLT_MATMUL_DESC_B_SCALE_MODE}) {
      const cublasStatus_t status = cublasLtMatmulDescSetAttribute(plan->op, attr, &mode, sizeof mode);
      QTUNE_CHECK(status == CUBLAS_STATUS_SUCCESS || !must_exist,
                  "fp8 GEMM: cuBLASLt refuses outer-vector scales: ", cublasLtGetStatusString(status));
      if (status != CUBLAS_STATUS_SUCCESS) return nullptr;
    }
  }
  if (fp8) {  // cuBLASLt's A is our b and its B our a
    QTUNE_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &b_dequant, sizeof b_dequant));
    QTUNE_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &a_dequant, sizeof a_dequant));
  }
  plan->a = make_layout(type_b, p.trans_b ? p.k : p.n, p.trans_b ? p.n : p.k, p.ldb, p.batch, p.batch_stride_b);
  plan->b = make_layout(type_a, p.trans_a ? p.m : p.k, p.trans_a ? p.k : p.m, p.lda, p.batch, p.batch_stride_a);
  plan->c = make_layout(types.data, p.n, p.m, p.ldc, p.batch, p.batch_stride_c);

  cublasLtMatmulPreference_t raw_pref = nullptr;
  QTUNE_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&raw_pref));
  const std::unique_ptr<std::remove_pointer_t<cublasLtMatmulPreference_t>,
                        cublasStatus_t (*)(cublasLtMatmulPreference_t)>
      pref(raw_pref, &cublasLtMatmulPreferenceDestroy);
  // A preference cuBLASLt did not take would pick an algorithm for operands other than ours.
  auto prefer = [&](cublasLtMatmulPreferenceAttributes_t attr, const void* value, size_t size) {
    QTUNE_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.get(), attr, value, size));
  };
  const uint64_t workspace = workspace_bytes_;
  prefer(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof workspace);
  // Pointers to cuBLASLt's A/B/C: our b, a, c.
  prefer(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &alignments[1], sizeof(uint32_t));
  prefer(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &alignments[0], sizeof(uint32_t));
  prefer(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &alignments[2], sizeof(uint32_t));
  prefer(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &alignments[2], sizeof(uint32_t));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(handle_, plan->op, plan->a, plan->b, plan->c, plan->c,
                                                               pref.get(), 1, &result, &found);
  if (!must_exist && (status != CUBLAS_STATUS_SUCCESS || found == 0)) return nullptr;
  QTUNE_CHECK(status == CUBLAS_STATUS_SUCCESS && found > 0, "gemm: cuBLASLt has no algorithm for ", dtype_name(p.dtype),
              " batch ", p.batch, " m ", p.m, " n ", p.n, " k ", p.k, (p.trans_a ? " a^T" : ""),
              (p.trans_b ? " b^T" : ""), " (lda ", p.lda, ", ldb ", p.ldb, ", ldc ", p.ldc,
              "): ", cublasLtGetStatusString(status));
  plan->algo = result.algo;
  return plans_.emplace(key, std::move(plan)).first->second.get();
}

void LtGemm::run(const GemmProblem& p, const void* a, const void* b, void* c, double alpha, double beta,
                 cudaStream_t stream) {
  if (p.batch == 0 || p.m == 0 || p.n == 0) return;
  QTUNE_CHECK(p.k > 0, "gemm: empty reduction (k = 0) must be handled by the caller");
  const int64_t elem = static_cast<int64_t>(dtype_size(p.dtype));
  const std::array<uint32_t, 3> alignments = {alignment_of(a, p.batch_stride_a * elem),
                                              alignment_of(b, p.batch_stride_b * elem),
                                              alignment_of(c, p.batch_stride_c * elem)};
  std::lock_guard<std::mutex> lock(mutex_);
  Plan& plan = *plan_for(p, alignments, true);
  const float alpha32 = static_cast<float>(alpha), beta32 = static_cast<float>(beta);
  const bool wide = p.dtype == DType::f64;
  const void* alpha_ptr = wide ? static_cast<const void*>(&alpha) : &alpha32;
  const void* beta_ptr = wide ? static_cast<const void*>(&beta) : &beta32;
  QTUNE_CUBLAS_CHECK(cublasLtMatmul(handle_, plan.op, alpha_ptr, b, plan.a, a, plan.b, beta_ptr, c, plan.c, c, plan.c,
                                    &plan.algo, workspace_, workspace_bytes_, stream));
}

bool LtGemm::run_fp8(const GemmProblem& p, const void* a, const void* b, void* c, const float* a_dequant,
                     const float* b_dequant, cudaStream_t stream) {
  QTUNE_CHECK(!p.trans_a && p.trans_b && p.batch == 1 && p.k > 0, "fp8 GEMM: expects a [M, K] and b [N, K] (TN), got ",
              p.trans_a ? "a^T " : "", p.trans_b ? "" : "b untransposed ", "batch ", p.batch, ", k ", p.k);
  const std::array<uint32_t, 3> alignments = {alignment_of(a, 0), alignment_of(b, 0), alignment_of(c, 0)};
  std::lock_guard<std::mutex> lock(mutex_);
  Plan* plan = plan_for(p, alignments, false, a_dequant, b_dequant);
  if (plan == nullptr) return false;
  // This call's factors (the plan may have been made for others'); they are read when the GEMM runs.
  QTUNE_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &b_dequant, sizeof b_dequant));
  QTUNE_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &a_dequant, sizeof a_dequant));
  const float alpha = 1.0f, beta = 0.0f;
  QTUNE_CUBLAS_CHECK(cublasLtMatmul(handle_, plan->op, &alpha, b, plan->a, a, plan->b, &beta, c, plan->c, c, plan->c,
                                    &plan->algo, workspace_, workspace_bytes_, stream));
  return true;
}

}  // namespace qtune::gpu
