#pragma once
// Float8 training of a linear layer (docs/numerics.md §3, torchao's Float8Linear): the three GEMMs of
// y = x W^T + b run on operands cast through fp8 with dynamic scales, per the recipe's table, through
// Backend::fp8_gemm on K-major operands: cuBLASLt's fp8 tensor-core GEMM on a GPU (tensorwise scales), an
// emulation elsewhere (both operands dequantized, then multiplied in f32 -- the function an fp8 GEMM with
// f32 accumulation computes). With tensorwise scales the backward reuses the forward's fp8 x and W
// (transposed) instead of quantizing them again.
#include <cstdint>
#include <optional>

#include "engine/module.h"
#include "quant/float8_recipe.h"
#include "quant/float8_scaling.h"

namespace qtune::nn {
class Linear;
}

namespace qtune::quant {

// The casts of the two operands of one GEMM; nullopt is high precision (the compute dtype, no fp8).
struct Float8GemmCasts {
  std::optional<Fp8Cast> a, b;
};

// docs/numerics.md §3's table, row by row.
struct Float8RecipeCasts {
  Float8GemmCasts output;       // y = x W^T:  a = x [N, in], b = W [out, in]
  Float8GemmCasts grad_input;   // dx = dy W:  a = dy [N, out], b = W [out, in]
  Float8GemmCasts grad_weight;  // dW = dy^T x: a = dy [N, out], b = x [N, in]
};
const Float8RecipeCasts& float8_recipe_casts(Float8Recipe recipe);

// x: [..., in], weight: [out, in], bias: [out] or undefined -> [..., out] in x's dtype. Differentiable
// in x, weight and bias; the bias is added in the compute dtype.
Tensor float8_linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Float8Recipe recipe, bool pow2_scales);

// Takes over an nn::Linear's weight and bias tensors (the same tensors, so optimizer state and
// checkpoint names carry over) and runs its forward through float8_linear.
class Float8Linear : public Module {
 public:
  Float8Linear(nn::Linear& source, Float8Recipe recipe, bool pow2_scales);

  // x: [..., in] -> [..., out]
  Tensor forward(const Tensor& x) override;

  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }
  Float8Recipe recipe() const { return recipe_; }
  bool pow2_scales() const { return pow2_scales_; }
  Tensor& weight() { return weight_; }
  Tensor& bias() { return bias_; }  // undefined without bias

 private:
  int64_t in_features_, out_features_;
  Float8Recipe recipe_;
  bool pow2_scales_;
  Tensor weight_;  // [out, in]
  Tensor bias_;    // [out]
};

}  // namespace qtune::quant
