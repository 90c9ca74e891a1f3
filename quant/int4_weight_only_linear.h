#pragma once
// The converted int4 weight-only linear (QATStep::Convert of Int4WeightOnly): packed asymmetric int4
// weights with f32 scales and zeros per group, dequantized for each forward and multiplied in the weight's
// dtype. Equals the prepared FakeQuantizedLinear bit for bit (the same dequantized weight, the same GEMM).
// Inference only; CPU.
#include "engine/module.h"
#include "quant/qat_config.h"
#include "quant/qat_int4_weights.h"

namespace qtune::quant {

class Int4WeightOnlyLinear : public Module {
 public:
  // weight: [out, in] (CPU), bias: [out] or undefined. in must be a multiple of group_size.
  Int4WeightOnlyLinear(const Tensor& weight, const Tensor& bias, const Int4WeightOnly& scheme);
  // Already packed weights (a quantized checkpoint being loaded): codes [out, in/2], scales and zeros
  // [out, in/group].
  Int4WeightOnlyLinear(PackedInt4 packed, const Tensor& bias, const Int4WeightOnly& scheme);

  // x: [..., in] -> [..., out]
  Tensor forward(const Tensor& x) override;
  // The weight the forward multiplies with: [out, in] in the original weight's dtype.
  Tensor dequantized_weight() const;

  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }

 private:
  int64_t in_features_, out_features_;
  PackedInt4 packed_;
  Tensor bias_;  // [out], the original bias's dtype
};

}  // namespace qtune::quant
