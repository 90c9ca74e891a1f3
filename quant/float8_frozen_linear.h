#pragma once
// Float8FrozenLinear: a frozen linear whose weight lives once in fp8 e4m3 (the float8 base of LoRA). The
// forward and the grad-input GEMM run as Float8Linear's do (docs/numerics.md §3) with the stored fp8 weight;
// there is no weight gradient, so the dense weight is dropped at construction.
#include <cstdint>

#include "engine/module.h"
#include "quant/float8.h"
#include "quant/float8_scaling.h"

namespace qtune::nn {
class Linear;
}

namespace qtune::quant {

class Float8FrozenLinear : public Module {
 public:
  // Casts linear's weight (f32 or bf16) to e4m3 with the recipe's forward scale of W (one scale, or one per
  // output row for the rowwise recipes); its bias, if any, is shared and frozen.
  Float8FrozenLinear(nn::Linear& linear, const Float8LinearConfig& config);
  // weight: [out, in] (f32 or bf16), bias: [out] or undefined (shared, frozen).
  Float8FrozenLinear(const Tensor& weight, const Tensor& bias, const Float8LinearConfig& config);

  // x: [..., in] -> [..., out] in x's dtype. Differentiable in x only. The grad-input GEMM multiplies by
  // the stored W: Float8Linear's W for tensorwise (bit for bit); the rowwise recipes re-cast W there (per
  // in-column, or per tensor), which a once-stored W cannot. With their power-of-two scales the two casts
  // round alike except where one scale puts an element in e4m3's subnormal range (3 of 3072 elements in
  // tests/test_float8_frozen.cpp, dx off by 1e-6 relative).
  Tensor forward(const Tensor& x) override;

  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }
  const Float8LinearConfig& config() const { return config_; }
  // The stored weight: codes [out, in] f8_e4m3 (a view of the u8 buffer), scale f32 [1, 1] or [out, 1].
  Fp8Tensor weight() const;
  Tensor& bias() { return bias_; }  // undefined without bias

 private:
  int64_t in_features_, out_features_;
  Float8LinearConfig config_;
  // Non-persistent buffers "fp8_codes" (u8) and "fp8_scale" (the f32 scales' bits as i32): Module::to(DType)
  // leaves integer tensors alone, where it would recast the codes as numbers and round the scales.
  // state_dict (the HF layout) leaves them out.
  Tensor codes_, scale_;
  Tensor bias_;  // [out]
};

}  // namespace qtune::quant
