#pragma once
// The converted 8da4w linear (QATStep::Convert): int4 weights packed two per byte with f32 scales per
// group; at run time each token is quantized to int8 (asymmetric, per token) and multiplied with int32
// accumulation (Backend::int8_int4_linear). Equals the prepared FakeQuantizedLinear up to the order of
// the float accumulation. Inference only: no gradient flows through it.
#include "engine/module.h"
#include "quant/qat_config.h"
#include "quant/qat_int4_weights.h"

namespace qtune::quant {

class Int8DynActInt4WeightLinear : public Module {
 public:
  // weight: [out, in] (CPU, f32 or bf16), bias: [out] or undefined. in must be a multiple of group_size.
  Int8DynActInt4WeightLinear(const Tensor& weight, const Tensor& bias, const Int8DynActInt4Weight& scheme);
  // Already packed weights (a quantized checkpoint being loaded): codes [out, in/2], scales [out, in/group].
  Int8DynActInt4WeightLinear(PackedInt4 packed, const Tensor& bias, const Int8DynActInt4Weight& scheme);

  // x: [..., in] -> [..., out] in x's dtype
  Tensor forward(const Tensor& x) override;

  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }
  const PackedInt4& packed_weight() const { return packed_; }

 private:
  int64_t in_features_, out_features_;
  Int8DynActInt4Weight scheme_;
  PackedInt4 packed_;
  Tensor bias_;  // [out] f32
};

}  // namespace qtune::quant
