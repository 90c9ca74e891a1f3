#pragma once
// bf16/f16 GEMMs on the CPU's own reduced-precision dot products (AVX512-BF16, AMX) through oneDNN's matmul
// primitive: operands read as stored, f32 accumulation, one rounding into C (docs/numerics.md, "GEMM").
#include <string>

#include "engine/tensor.h"

namespace qtune::cpu {

// c[i] = alpha * op(a[i]) @ op(b[i]) + beta * c[i] with Backend::gemm's contract (shapes already checked, one
// dtype for all three). Returns false, having touched nothing, where the caller must widen to f32 instead: no
// oneDNN in this build, QTUNE_GEMM_WIDEN=1 in the environment, a layout matmul cannot describe (row stride 0,
// a shared C, k = 0), or no kernel for the dtype that beats widening on this CPU (see reduced_gemm_path).
bool onednn_matmul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& c, double alpha,
                   double beta);

// How a bf16/f16 GEMM runs on this machine now, for `qtune version` and the benchmarks: "oneDNN matmul
// (brg:avx512_core_bf16)" or "widened to f32 (<why>)".
std::string reduced_gemm_path(DType dtype);

// Whether bf16/f16 GEMMs take oneDNN's matmul here now (reduced_gemm_path says how, or why not).
bool reduced_gemm_native(DType dtype);

// Whether QTUNE_GEMM_WIDEN=1 forces the widening path (read on every call, so a test can switch it).
bool gemm_widen_forced();

}  // namespace qtune::cpu
