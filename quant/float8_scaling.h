#pragma once
// Dynamic float8 scaling of one GEMM operand (docs/numerics.md §3): an amax per group, a scale per group,
// and the operand cast through fp8 with it. No autograd: the float8 GEMM ops own their graphs.
#include <cstdint>

#include "engine/tensor.h"

namespace qtune::quant {

enum class Fp8Format : uint8_t { e4m3, e5m2 };
double fp8_max(Fp8Format format);  // 448 or 57344
DType fp8_dtype(Fp8Format format);

// The elements of a [R, C] operand that share one scale. A GEMM's operand is scaled along its reduction
// dim: "rowwise" for x [N, in] in y = x W^T is one scale per row, for dy [N, out] in dW = dy^T x one per
// column.
enum class ScaleGroup : uint8_t { tensor, row, column };

struct Fp8Cast {
  Fp8Format format;
  ScaleGroup group;
};

// The cast of a GEMM operand in K-major form ([rows, K], the layout fp8 GEMMs take): a recipe's row and
// column groups both run along the operand's reduction dim K, which is a row of the K-major form.
inline Fp8Cast k_major_cast(Fp8Cast cast) {
  return {cast.format, cast.group == ScaleGroup::tensor ? ScaleGroup::tensor : ScaleGroup::row};
}

struct Fp8Tensor {
  Tensor codes;  // [R, C] f8_e4m3 or f8_e5m2
  Tensor scale;  // f32 [1, 1], [R, 1] or [1, C] (the group): codes ~ x * scale
};

// x: [R, C] (f64, f32, bf16 or f16)
Fp8Tensor quantize_fp8(const Tensor& x, Fp8Cast cast, bool pow2_scales);
// -> [R, C] f32: codes / scale
Tensor dequantize_fp8(const Fp8Tensor& q);

// The fp8 GEMM out[M, N] = a[M, K] @ b[N, K]^T (Backend::fp8_gemm: K-major operands, tensorwise or per-row
// scales, f32 accumulation) in `out_dtype`. On a GPU the fp8 tensor cores run it; never a dense operand.
Tensor fp8_matmul(const Fp8Tensor& a, const Fp8Tensor& b, DType out_dtype);
// The transpose of a tensorwise-scaled operand ([R, C] -> [C, R] codes, the same scale): how one
// quantization serves both layouts a linear's GEMMs need.
Fp8Tensor transpose_tensorwise(const Fp8Tensor& q);

}  // namespace qtune::quant
