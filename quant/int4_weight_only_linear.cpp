#include "quant/int4_weight_only_linear.h"

#include <numeric>
#include <utility>
#include <vector>

#include "engine/autograd.h"
#include "engine/check.h"
#include "ops/matmul.h"

namespace qtune::quant {

Int4WeightOnlyLinear::Int4WeightOnlyLinear(const Tensor& weight, const Tensor& bias, const Int4WeightOnly& scheme)
    : Int4WeightOnlyLinear(pack_int4(weight, weight_spec(LinearScheme{scheme})), bias, scheme) {}

Int4WeightOnlyLinear::Int4WeightOnlyLinear(PackedInt4 packed, const Tensor& bias, const Int4WeightOnly& scheme)
    : Module("Int4WeightOnlyLinear"),
      in_features_(packed.codes.size(1) * 2),
      out_features_(packed.codes.size(0)),
      packed_(std::move(packed)) {
  check_packed_int4(packed_, scheme.group_size, true, "Int4WeightOnlyLinear");
  register_buffer("weight_int4", &packed_.codes);
  register_buffer("weight_scales", &packed_.scales);
  register_buffer("weight_zeros", &packed_.zeros);
  if (bias.defined()) {
    bias_ = bias.detach().clone();
    register_buffer("bias", &bias_);
  }
}

Tensor Int4WeightOnlyLinear::dequantized_weight() const {
  std::vector<int64_t> rows(static_cast<size_t>(out_features_));
  std::iota(rows.begin(), rows.end(), int64_t{0});
  Tensor w = Tensor::empty({out_features_, in_features_}, packed_.dtype);
  dequantize_int4_rows(packed_, rows.data(), out_features_, w);
  return w;
}

Tensor Int4WeightOnlyLinear::forward(const Tensor& x) {
  QTUNE_CHECK(x.dim() >= 1 && x.size(static_cast<int64_t>(x.dim()) - 1) == in_features_, "Int4WeightOnlyLinear: input ",
              shape_str(x.shape()), " must end in in_features = ", in_features_);
  NoGradGuard no_grad;
  return ops::linear(x.detach(), dequantized_weight(), bias_);
}

}  // namespace qtune::quant
