#include "quant/weight_quantize.h"

#include <memory>
#include <variant>

#include "engine/autograd.h"
#include "engine/check.h"
#include "engine/overloaded.h"
#include "quant/float8_frozen_linear.h"
#include "quant/frozen_nf4_linear.h"
#include "quant/int4_weight_only_linear.h"
#include "quant/int8_dyn_act_int4_weight_linear.h"
#include "quant/nf4_tensor.h"
#include "quant/qat_fake_quantize.h"

namespace qtune::quant {
namespace {

// q4_0 / q8_0: the dequantized values in a plain linear, as QAT convert makes them.
ModulePtr dequantized_linear(const Tensor& weight, const Tensor& bias, const LinearScheme& scheme) {
  nn::Linear::Options options;
  options.bias = bias.defined();
  options.dtype = weight.dtype();
  options.device = weight.device();
  std::shared_ptr<nn::Linear> linear;
  {
    SkipInitGuard skip_init;
    linear = std::make_shared<nn::Linear>(weight.size(1), weight.size(0), options);
  }
  NoGradGuard no_grad;
  linear->weight().copy_(fake_quantize(weight.detach(), weight_spec(scheme)));
  if (options.bias) linear->bias().copy_(bias.detach());
  return linear;
}

}  // namespace

bool quantizes_on_gpu(const WeightScheme& scheme) {
  return std::holds_alternative<NF4>(scheme) || std::holds_alternative<Float8Weights>(scheme);
}

ModulePtr quantize_linear(const Tensor& weight, const Tensor& bias, const WeightScheme& scheme, std::string_view fqn) {
  QTUNE_CHECK(weight.defined() && weight.dim() == 2, "quantize '", fqn, "': the weight must be [out, in], got ",
              weight.defined() ? shape_str(weight.shape()) : std::string("undefined"));
  QTUNE_CHECK(weight.device().is_cpu() || quantizes_on_gpu(scheme), "quantize '", fqn, "': the weight is on ",
              weight.device().str(), "; only NF4 and float8 weights are built on a GPU, the other schemes on CPU");
  check_weight_scheme_fits(scheme, weight.size(0), weight.size(1), fqn);
  const Tensor w = weight.detach();
  return std::visit(
      Overloaded{
          [&](const NF4&) -> ModulePtr { return std::make_shared<FrozenNF4Linear>(w, bias); },
          [&](const Float8Weights& s) -> ModulePtr { return std::make_shared<Float8FrozenLinear>(w, bias, s.config); },
          [&](const Int8DynActInt4Weight& s) -> ModulePtr {
            return std::make_shared<Int8DynActInt4WeightLinear>(w, bias, s);
          },
          [&](const Int4WeightOnly& s) -> ModulePtr { return std::make_shared<Int4WeightOnlyLinear>(w, bias, s); },
          [&](const auto& s) -> ModulePtr { return dequantized_linear(w, bias, LinearScheme{s}); }},
      scheme);
}

}  // namespace qtune::quant
