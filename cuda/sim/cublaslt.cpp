// cuBLASLt in the sim flavor: D = alpha * op(A) op(B) + beta * C over column-major matrices, the way
// the cuBLASLt documentation defines it, with an in-order f32 (f64 for CUBLAS_COMPUTE_64F) reference
// sum; CUBLAS_COMPUTE_32F_FAST_TF32 first rounds the inputs to TF32 (engine/numerics/tf32.h). For fp8 operands: D =
// scale_D * (alpha * scale_A * scale_B * op(A) op(B) + beta * C), and the AMAX_D output receives max |.| of the value
// in parentheses; with outer-vector scale modes (as on Hopper) scale_A is scale_A[i] and scale_B scale_B[j] at D(i, j),
// and both operands must use them. Only what qtune uses is implemented; anything else is refused with a status and a
// message, never approximated.
#include <cublasLt.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "cuda/sim/device_memory.h"
#include "cuda/sim/observe.h"
#include "cuda/sim/streams.h"
#include "engine/numerics/bf16.h"
#include "engine/numerics/f16.h"
#include "engine/numerics/fp8.h"
#include "engine/numerics/tf32.h"

struct cublasLtContext {
  int device = 0;
};

struct cublasLtMatmulDescOpaque_t {
  cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
  cudaDataType_t scale = CUDA_R_32F;
  cublasOperation_t trans_a = CUBLAS_OP_N, trans_b = CUBLAS_OP_N;
  const float* a_scale = nullptr;
  const float* b_scale = nullptr;
  // CUBLASLT_MATMUL_MATRIX_SCALE_SCALAR_32F, or OUTER_VEC_32F: a_scale has M floats, b_scale N.
  int32_t a_scale_mode = CUBLASLT_MATMUL_MATRIX_SCALE_SCALAR_32F;
  int32_t b_scale_mode = CUBLASLT_MATMUL_MATRIX_SCALE_SCALAR_32F;
  const float* d_scale = nullptr;
  float* amax_d = nullptr;
};

struct cublasLtMatrixLayoutOpaque_t {
  cudaDataType_t type = CUDA_R_32F;
  uint64_t rows = 0, cols = 0;
  int64_t ld = 0;
  int32_t batch = 1;
  int64_t batch_stride = 0;
};

struct cublasLtMatmulPreferenceOpaque_t {
  uint64_t max_workspace = 0;
  // Without a stated alignment cuBLASLt assumes 256-byte aligned operands.
  uint32_t alignment[4] = {256, 256, 256, 256};
};

namespace {

thread_local cublasStatus_t last_status = CUBLAS_STATUS_SUCCESS;
thread_local std::string last_message;

cublasStatus_t refuse(cublasStatus_t status, std::string message) {
  last_status = status;
  last_message = std::move(message);
  return status;
}

size_t type_size(cudaDataType_t t) {
  switch (t) {
    case CUDA_R_64F:
      return 8;
    case CUDA_R_32F:
    case CUDA_R_32I:
      return 4;
    case CUDA_R_16F:
    case CUDA_R_16BF:
      return 2;
    case CUDA_R_8I:
    case CUDA_R_8F_E4M3:
    case CUDA_R_8F_E5M2:
      return 1;
  }
  return 0;
}

const char* type_name(cudaDataType_t t) {
  switch (t) {
    case CUDA_R_64F:
      return "CUDA_R_64F";
    case CUDA_R_32F:
      return "CUDA_R_32F";
    case CUDA_R_32I:
      return "CUDA_R_32I";
    case CUDA_R_16F:
      return "CUDA_R_16F";
    case CUDA_R_16BF:
      return "CUDA_R_16BF";
    case CUDA_R_8I:
      return "CUDA_R_8I";
    case CUDA_R_8F_E4M3:
      return "CUDA_R_8F_E4M3";
    case CUDA_R_8F_E5M2:
      return "CUDA_R_8F_E5M2";
  }
  return "an unknown type";
}

bool is_fp8(cudaDataType_t t) { return t == CUDA_R_8F_E4M3 || t == CUDA_R_8F_E5M2; }

double load(cudaDataType_t t, const void* base, int64_t index) {
  using namespace qtune::numerics;
  switch (t) {
    case CUDA_R_64F:
      return static_cast<const double*>(base)[index];
    case CUDA_R_32F:
      return static_cast<const float*>(base)[index];
    case CUDA_R_16F:
      return f16_bits_to_f32(static_cast<const uint16_t*>(base)[index]);
    case CUDA_R_16BF:
      return bf16_bits_to_f32(static_cast<const uint16_t*>(base)[index]);
    case CUDA_R_8F_E4M3:
      return e4m3_to_f32(static_cast<const uint8_t*>(base)[index]);
    case CUDA_R_8F_E5M2:
      return e5m2_to_f32(static_cast<const uint8_t*>(base)[index]);
    default:
      return 0.0;
  }
}

void store(cudaDataType_t t, void* base, int64_t index, double v) {
  using namespace qtune::numerics;
  switch (t) {
    case CUDA_R_64F:
      static_cast<double*>(base)[index] = v;
      return;
    case CUDA_R_32F:
      static_cast<float*>(base)[index] = static_cast<float>(v);
      return;
    case CUDA_R_16F:
      static_cast<uint16_t*>(base)[index] = f32_to_f16_bits(static_cast<float>(v));
      return;
    case CUDA_R_16BF:
      static_cast<uint16_t*>(base)[index] = f32_to_bf16_bits(static_cast<float>(v));
      return;
    case CUDA_R_8F_E4M3:
      static_cast<uint8_t*>(base)[index] = f32_to_e4m3(static_cast<float>(v));
      return;
    case CUDA_R_8F_E5M2:
      static_cast<uint8_t*>(base)[index] = f32_to_e5m2(static_cast<float>(v));
      return;
    default:
      return;
  }
}

// The (A, B, C, D) type combinations of the cuBLASLt documentation that the simulator implements.
cublasStatus_t check_types(const cublasLtMatmulDescOpaque_t& op, cudaDataType_t a, cudaDataType_t b, cudaDataType_t c,
                           cudaDataType_t d) {
  auto combo = [&] {
    return std::string(type_name(a)) + " x " + type_name(b) + " -> C " + type_name(c) + ", D " + type_name(d);
  };
  if (op.compute == CUBLAS_COMPUTE_64F) {
    if (op.scale == CUDA_R_64F && a == CUDA_R_64F && b == a && c == a && d == a) return CUBLAS_STATUS_SUCCESS;
    return refuse(CUBLAS_STATUS_NOT_SUPPORTED, "CUBLAS_COMPUTE_64F with " + combo() + " (all must be CUDA_R_64F)");
  }
  if (op.compute == CUBLAS_COMPUTE_32F_FAST_TF32) {
    if (op.scale == CUDA_R_32F && a == CUDA_R_32F && b == a && c == a && d == a) return CUBLAS_STATUS_SUCCESS;
    return refuse(CUBLAS_STATUS_NOT_SUPPORTED,
                  "CUBLAS_COMPUTE_32F_FAST_TF32 with " + combo() + " (the simulator implements all CUDA_R_32F)");
  }
  if (op.compute != CUBLAS_COMPUTE_32F || op.scale != CUDA_R_32F)
    return refuse(CUBLAS_STATUS_NOT_SUPPORTED,
                  "the simulator implements CUBLAS_COMPUTE_32F with CUDA_R_32F scales, "
                  "CUBLAS_COMPUTE_32F_FAST_TF32 and CUBLAS_COMPUTE_64F, not compute type " +
                      std::to_string(op.compute));
  if (is_fp8(a) || is_fp8(b)) {
    if (!is_fp8(a) || !is_fp8(b) || (a == CUDA_R_8F_E5M2 && b == CUDA_R_8F_E5M2))
      return refuse(CUBLAS_STATUS_NOT_SUPPORTED, "fp8 GEMM " + combo() + ": A and B must both be fp8, not both e5m2");
    if (op.trans_a != CUBLAS_OP_T || op.trans_b != CUBLAS_OP_N)
      return refuse(CUBLAS_STATUS_NOT_SUPPORTED,
                    "fp8 GEMMs take A transposed and B not (the \"TN\" layout, K-major operands)");
    if (op.a_scale_mode != op.b_scale_mode)
      return refuse(CUBLAS_STATUS_NOT_SUPPORTED, "fp8 GEMM: A and B scale modes differ");
    const bool c_ok = c == CUDA_R_16BF || c == CUDA_R_16F || c == CUDA_R_32F;
    const bool d_ok = d == c || (is_fp8(d) && c != CUDA_R_32F);
    if (!c_ok || !d_ok) return refuse(CUBLAS_STATUS_NOT_SUPPORTED, "fp8 GEMM " + combo());
    return CUBLAS_STATUS_SUCCESS;
  }
  if (op.a_scale != nullptr || op.b_scale != nullptr || op.d_scale != nullptr || op.amax_d != nullptr ||
      op.a_scale_mode != CUBLASLT_MATMUL_MATRIX_SCALE_SCALAR_32F ||
      op.b_scale_mode != CUBLASLT_MATMUL_MATRIX_SCALE_SCALAR_32F)
    return refuse(CUBLAS_STATUS_NOT_SUPPORTED, "scale and amax pointers apply to fp8 GEMMs only, not " + combo());
  const bool ok = (a == CUDA_R_32F && b == a && c == a && d == a) ||
                  ((a == CUDA_R_16BF || a == CUDA_R_16F) && b == a && (c == a || c == CUDA_R_32F) && d == c);
  return ok ? CUBLAS_STATUS_SUCCESS : refuse(CUBLAS_STATUS_NOT_SUPPORTED, "GEMM types " + combo());
}

struct Problem {
  uint64_t m = 0, n = 0, k = 0;
  int32_t batch = 1;
};

cublasStatus_t check_shapes(const cublasLtMatmulDescOpaque_t& op, const cublasLtMatrixLayoutOpaque_t& a,
                            const cublasLtMatrixLayoutOpaque_t& b, const cublasLtMatrixLayoutOpaque_t& c,
                            const cublasLtMatrixLayoutOpaque_t& d, Problem& p) {
  p.m = d.rows;
  p.n = d.cols;
  p.k = op.trans_a == CUBLAS_OP_N ? a.cols : a.rows;
  const uint64_t a_m = op.trans_a == CUBLAS_OP_N ? a.rows : a.cols;
  const uint64_t b_k = op.trans_b == CUBLAS_OP_N ? b.rows : b.cols, b_n = op.trans_b == CUBLAS_OP_N ? b.cols : b.rows;
  if (a_m != p.m || b_k != p.k || b_n != p.n || c.rows != p.m || c.cols != p.n)
    return refuse(CUBLAS_STATUS_INVALID_VALUE,
                  "layouts disagree: op(A) " + std::to_string(a_m) + "x" + std::to_string(p.k) + ", op(B) " +
                      std::to_string(b_k) + "x" + std::to_string(b_n) + ", C " + std::to_string(c.rows) + "x" +
                      std::to_string(c.cols) + ", D " + std::to_string(d.rows) + "x" + std::to_string(d.cols));
  for (const auto* l : {&a, &b, &c, &d}) {
    if (l->ld < static_cast<int64_t>(std::max<uint64_t>(l->rows, 1)))
      return refuse(CUBLAS_STATUS_INVALID_VALUE, "a leading dimension " + std::to_string(l->ld) +
                                                     " is smaller than its column height " + std::to_string(l->rows));
    if (l->batch != d.batch)
      return refuse(CUBLAS_STATUS_INVALID_VALUE,
                    "batch counts differ (" + std::to_string(l->batch) + " and " + std::to_string(d.batch) + ")");
  }
  if (d.batch > 1 && d.batch_stride == 0)
    return refuse(CUBLAS_STATUS_INVALID_VALUE, "D has batch stride 0: every batch would write the same matrix");
  if (p.k == 0) return refuse(CUBLAS_STATUS_INVALID_VALUE, "k = 0: an empty reduction");
  if (op.trans_a == CUBLAS_OP_C || op.trans_b == CUBLAS_OP_C)
    return refuse(CUBLAS_STATUS_NOT_SUPPORTED, "CUBLAS_OP_C (conjugate) is meaningless for real types");
  p.batch = d.batch;
  return CUBLAS_STATUS_SUCCESS;
}

// The whole extent a layout touches lies within one allocation of the device.
cublasStatus_t check_memory(const char* which, const void* ptr, const cublasLtMatrixLayoutOpaque_t& l, int device) {
  if (l.rows == 0 || l.cols == 0) return CUBLAS_STATUS_SUCCESS;
  const uint64_t last = (l.cols - 1) * static_cast<uint64_t>(l.ld) + l.rows +
                        static_cast<uint64_t>(l.batch - 1) * static_cast<uint64_t>(l.batch_stride);
  const size_t bytes = last * type_size(l.type);
  const auto a = qtune::sim::find_allocation(ptr, bytes);
  if (!a || a->device != device)
    return refuse(CUBLAS_STATUS_INVALID_VALUE,
                  std::string(which) + " (" + std::to_string(bytes) +
                      " bytes from its pointer) is not within one allocation of cuda:" + std::to_string(device));
  return CUBLAS_STATUS_SUCCESS;
}

uint32_t alignment_of(const void* ptr, const cublasLtMatrixLayoutOpaque_t& l) {
  uint64_t bits = reinterpret_cast<uintptr_t>(ptr) | 256u;
  if (l.batch > 1) bits |= static_cast<uint64_t>(l.batch_stride) * type_size(l.type);
  return static_cast<uint32_t>(bits & (~bits + 1));
}

template <class T>
cublasStatus_t set_value(T& field, const void* buf, size_t size) {
  if (size != sizeof(T)) return refuse(CUBLAS_STATUS_INVALID_VALUE, "attribute buffer of the wrong size");
  std::memcpy(&field, buf, sizeof(T));
  return CUBLAS_STATUS_SUCCESS;
}

}  // namespace

const char* cublasLtGetStatusName(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS:
      return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR:
      return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "CUBLAS_STATUS_NOT_SUPPORTED";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}

const char* cublasLtGetStatusString(cublasStatus_t status) {
  if (status == last_status && !last_message.empty()) return last_message.c_str();
  return status == CUBLAS_STATUS_SUCCESS ? "success" : cublasLtGetStatusName(status);
}

cublasStatus_t cublasLtCreate(cublasLtHandle_t* handle) {
  *handle = new cublasLtContext;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle) {
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* desc, cublasComputeType_t compute, cudaDataType_t scale) {
  *desc = new cublasLtMatmulDescOpaque_t;
  (*desc)->compute = compute;
  (*desc)->scale = scale;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc) {
  delete desc;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr,
                                              const void* buf, size_t size) {
  switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA:
      return set_value(desc->trans_a, buf, size);
    case CUBLASLT_MATMUL_DESC_TRANSB:
      return set_value(desc->trans_b, buf, size);
    case CUBLASLT_MATMUL_DESC_A_SCALE_POINTER:
      return set_value(desc->a_scale, buf, size);
    case CUBLASLT_MATMUL_DESC_B_SCALE_POINTER:
      return set_value(desc->b_scale, buf, size);
    case CUBLASLT_MATMUL_DESC_A_SCALE_MODE:
    case CUBLASLT_MATMUL_DESC_B_SCALE_MODE: {
      int32_t mode = 0;
      if (const cublasStatus_t s = set_value(mode, buf, size); s != CUBLAS_STATUS_SUCCESS) return s;
      if (mode != CUBLASLT_MATMUL_MATRIX_SCALE_SCALAR_32F && mode != CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F)
        return refuse(
            CUBLAS_STATUS_NOT_SUPPORTED,
            "the simulator implements scalar and outer-vector f32 scales, not scale mode " + std::to_string(mode));
      (attr == CUBLASLT_MATMUL_DESC_A_SCALE_MODE ? desc->a_scale_mode : desc->b_scale_mode) = mode;
      return CUBLAS_STATUS_SUCCESS;
    }
    case CUBLASLT_MATMUL_DESC_D_SCALE_POINTER:
      return set_value(desc->d_scale, buf, size);
    case CUBLASLT_MATMUL_DESC_AMAX_D_POINTER:
      return set_value(desc->amax_d, buf, size);
    case CUBLASLT_MATMUL_DESC_EPILOGUE: {
      int32_t epilogue = 0;
      if (const cublasStatus_t s = set_value(epilogue, buf, size); s != CUBLAS_STATUS_SUCCESS) return s;
      if (epilogue == CUBLASLT_EPILOGUE_DEFAULT) return CUBLAS_STATUS_SUCCESS;
      return refuse(CUBLAS_STATUS_NOT_SUPPORTED, "the simulator implements only CUBLASLT_EPILOGUE_DEFAULT");
    }
    case CUBLASLT_MATMUL_DESC_POINTER_MODE: {
      int32_t mode = 0;
      if (const cublasStatus_t s = set_value(mode, buf, size); s != CUBLAS_STATUS_SUCCESS) return s;
      if (mode == CUBLASLT_POINTER_MODE_HOST) return CUBLAS_STATUS_SUCCESS;
      return refuse(CUBLAS_STATUS_NOT_SUPPORTED, "the simulator implements only host alpha/beta pointers");
    }
    default:
      return refuse(CUBLAS_STATUS_NOT_SUPPORTED,
                    "matmul descriptor attribute " + std::to_string(attr) + " is not simulated");
  }
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* layout, cudaDataType_t type, uint64_t rows,
                                          uint64_t cols, int64_t ld) {
  if (type_size(type) == 0) return refuse(CUBLAS_STATUS_NOT_SUPPORTED, "matrix type " + std::to_string(type));
  *layout = new cublasLtMatrixLayoutOpaque_t;
  (*layout)->type = type;
  (*layout)->rows = rows;
  (*layout)->cols = cols;
  (*layout)->ld = ld;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t layout) {
  delete layout;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t layout, cublasLtMatrixLayoutAttribute_t attr,
                                                const void* buf, size_t size) {
  switch (attr) {
    case CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT:
      if (const cublasStatus_t s = set_value(layout->batch, buf, size); s != CUBLAS_STATUS_SUCCESS) return s;
      return layout->batch >= 1 ? CUBLAS_STATUS_SUCCESS
                                : refuse(CUBLAS_STATUS_INVALID_VALUE, "batch count " + std::to_string(layout->batch));
    case CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET:
      return set_value(layout->batch_stride, buf, size);
    case CUBLASLT_MATRIX_LAYOUT_ORDER: {
      int32_t order = 0;
      if (const cublasStatus_t s = set_value(order, buf, size); s != CUBLAS_STATUS_SUCCESS) return s;
      if (order == CUBLASLT_ORDER_COL) return CUBLAS_STATUS_SUCCESS;
      return refuse(CUBLAS_STATUS_NOT_SUPPORTED, "the simulator implements column-major layouts only");
    }
    default:
      return refuse(CUBLAS_STATUS_NOT_SUPPORTED,
                    "matrix layout attribute " + std::to_string(attr) + " is not simulated");
  }
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* pref) {
  *pref = new cublasLtMatmulPreferenceOpaque_t;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref) {
  delete pref;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                    cublasLtMatmulPreferenceAttributes_t attr, const void* buf,
                                                    size_t size) {
  switch (attr) {
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES:
      return set_value(pref->max_workspace, buf, size);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES:
      return set_value(pref->alignment[attr - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES], buf, size);
    default:
      return refuse(CUBLAS_STATUS_NOT_SUPPORTED, "preference attribute " + std::to_string(attr) + " is not simulated");
  }
}

// The one "algorithm" remembers the alignments it was chosen for: cublasLtMatmul refuses operands
// aligned less than that, as a real kernel chosen for aligned operands would misbehave.
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a,
                                              cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
                                              cublasLtMatrixLayout_t d, cublasLtMatmulPreference_t pref, int requested,
                                              cublasLtMatmulHeuristicResult_t results[], int* returned) {
  *returned = 0;
  if (requested < 1) return refuse(CUBLAS_STATUS_INVALID_VALUE, "requested algorithm count < 1");
  if (const cublasStatus_t s = check_types(*desc, a->type, b->type, c->type, d->type); s != CUBLAS_STATUS_SUCCESS)
    return s;
  Problem p;
  if (const cublasStatus_t s = check_shapes(*desc, *a, *b, *c, *d, p); s != CUBLAS_STATUS_SUCCESS) return s;
  if (is_fp8(a->type) && (a->ld % 16 != 0 || b->ld % 16 != 0))
    return refuse(CUBLAS_STATUS_NOT_SUPPORTED, "fp8 GEMMs need leading dimensions that are multiples of 16, got " +
                                                   std::to_string(a->ld) + " and " + std::to_string(b->ld));
  std::memset(&results[0], 0, sizeof results[0]);
  for (int i = 0; i < 4; ++i) results[0].algo.data[i] = pref->alignment[i];
  results[0].workspaceSize = 0;
  results[0].state = CUBLAS_STATUS_SUCCESS;
  results[0].wavesCount = 1.0f;
  *returned = 1;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, const void* alpha_ptr, const void* a,
                              cublasLtMatrixLayout_t a_layout, const void* b, cublasLtMatrixLayout_t b_layout,
                              const void* beta_ptr, const void* c, cublasLtMatrixLayout_t c_layout, void* d,
                              cublasLtMatrixLayout_t d_layout, const cublasLtMatmulAlgo_t* algo, void* workspace,
                              size_t workspace_bytes, cudaStream_t stream) {
  CUstream_st* s = qtune::sim::resolve_stream(stream);
  if (s == nullptr) return refuse(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatmul: not a stream");
  const auto& op = *desc;
  if (const cublasStatus_t st = check_types(op, a_layout->type, b_layout->type, c_layout->type, d_layout->type);
      st != CUBLAS_STATUS_SUCCESS)
    return st;
  Problem p;
  if (const cublasStatus_t st = check_shapes(op, *a_layout, *b_layout, *c_layout, *d_layout, p);
      st != CUBLAS_STATUS_SUCCESS)
    return st;
  (void)handle;
  const int device = s->device;
  const void* ptrs[4] = {a, b, c, d};
  const cublasLtMatrixLayoutOpaque_t* layouts[4] = {a_layout, b_layout, c_layout, d_layout};
  const char* names[4] = {"A", "B", "C", "D"};
  for (int i = 0; i < 4; ++i) {
    if (const cublasStatus_t st = check_memory(names[i], ptrs[i], *layouts[i], device); st != CUBLAS_STATUS_SUCCESS)
      return st;
    if (algo != nullptr && alignment_of(ptrs[i], *layouts[i]) < algo->data[i])
      return refuse(CUBLAS_STATUS_INVALID_VALUE,
                    std::string(names[i]) + " is aligned to " + std::to_string(alignment_of(ptrs[i], *layouts[i])) +
                        " bytes, but the algorithm was chosen for " + std::to_string(algo->data[i]) +
                        " (set CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*_BYTES to what the operands have)");
  }
  const bool outer = op.a_scale_mode == CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
  if (outer) {
    const std::pair<const float*, uint64_t> vectors[2] = {{op.a_scale, p.m}, {op.b_scale, p.n}};
    for (const auto& [vector, count] : vectors) {
      const auto a = vector == nullptr ? std::nullopt : qtune::sim::find_allocation(vector, count * sizeof(float));
      if (!a || a->device != device)
        return refuse(CUBLAS_STATUS_INVALID_VALUE,
                      "an outer-vector scale (" + std::to_string(count) +
                          " floats) is not within one allocation of cuda:" + std::to_string(device));
    }
  }
  if (algo != nullptr && workspace_bytes > 0 && !qtune::sim::find_allocation(workspace, workspace_bytes))
    return refuse(CUBLAS_STATUS_INVALID_VALUE, "the workspace is not device memory of its stated size");
  const bool wide = op.compute == CUBLAS_COMPUTE_64F;
  const double alpha = wide ? *static_cast<const double*>(alpha_ptr) : *static_cast<const float*>(alpha_ptr);
  const double beta = wide ? *static_cast<const double*>(beta_ptr) : *static_cast<const float*>(beta_ptr);
  const auto la = *a_layout, lb = *b_layout, lc = *c_layout, ld = *d_layout;
  if (is_fp8(la.type)) qtune::sim::count_fp8_matmul();
  const bool tf32 = op.compute == CUBLAS_COMPUTE_32F_FAST_TF32;
  qtune::sim::enqueue(s, [=] {
    const bool fp8 = is_fp8(la.type);
    auto scale_ab = [&](uint64_t i, uint64_t j) {
      if (outer) return op.a_scale[i] * op.b_scale[j];
      return (op.a_scale != nullptr ? *op.a_scale : 1.0f) * (op.b_scale != nullptr ? *op.b_scale : 1.0f);
    };
    const float scale_d = op.d_scale != nullptr ? *op.d_scale : 1.0f;
    float amax = 0.0f;
    for (int32_t batch = 0; batch < p.batch; ++batch) {
      const int64_t oa = batch * la.batch_stride, ob = batch * lb.batch_stride, oc = batch * lc.batch_stride,
                    od = batch * ld.batch_stride;
      // op(A) op(B) at (i, j), summed over k in order in Acc.
      auto product = [&](auto zero, uint64_t i, uint64_t j) {
        using Acc = decltype(zero);
        Acc acc = zero;
        for (uint64_t l = 0; l < p.k; ++l) {
          const uint64_t ia = op.trans_a == CUBLAS_OP_N ? i + l * la.ld : l + i * la.ld;
          const uint64_t ib = op.trans_b == CUBLAS_OP_N ? l + j * lb.ld : j + l * lb.ld;
          Acc x = static_cast<Acc>(load(la.type, a, oa + static_cast<int64_t>(ia)));
          Acc y = static_cast<Acc>(load(lb.type, b, ob + static_cast<int64_t>(ib)));
          if (tf32) {
            x = static_cast<Acc>(qtune::numerics::round_to_tf32(static_cast<float>(x)));
            y = static_cast<Acc>(qtune::numerics::round_to_tf32(static_cast<float>(y)));
          }
          acc += x * y;
        }
        return acc;
      };
      for (uint64_t j = 0; j < p.n; ++j) {
        for (uint64_t i = 0; i < p.m; ++i) {
          const int64_t ic = oc + static_cast<int64_t>(i + j * lc.ld);
          double value = 0.0;
          if (wide) {
            value = alpha * product(0.0, i, j);
            if (beta != 0.0) value += beta * load(lc.type, c, ic);
          } else {
            const float acc = product(0.0f, i, j);
            float v = static_cast<float>(alpha) * (fp8 ? acc * scale_ab(i, j) : acc);
            // With beta = 0, C is not read (it may hold anything, NaN included), as cuBLAS documents.
            if (beta != 0.0) v += static_cast<float>(beta) * static_cast<float>(load(lc.type, c, ic));
            amax = std::isnan(v) || std::isnan(amax) ? NAN : std::max(amax, std::fabs(v));
            value = is_fp8(ld.type) ? v * scale_d : v;
          }
          store(ld.type, d, od + static_cast<int64_t>(i + j * ld.ld), value);
        }
      }
    }
    if (op.amax_d != nullptr) *op.amax_d = amax;
    return qtune::sim::Fault{};
  });
  return CUBLAS_STATUS_SUCCESS;
}
