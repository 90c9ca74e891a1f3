#include "quant/weight_quantize.h"

#include <memory>

#include "engine/autograd.h"
#include "engine/check.h"
#include "quant/float8_frozen_linear.h"
#include "quant/frozen_nf4_linear.h"
#include "quant/int4_weight_only_linear.h"
#include "quant/int8_dyn_act_int4_weight_linear.h"
#include "quant/nf4_tensor.h"
#include "quant/qat_fake_quantize.h"

namespace qtune::quant {
namespace {

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};

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

WeightScheme parse_weight_scheme(std::string_view name, std::optional<int64_t> group_size) {
  if (name == "nf4") {
    QTUNE_CHECK(!group_size,
                "scheme nf4 has fixed blocks (64 weights, scalers per 256 blocks); --group-size applies "
                "to 8da4w and int4wo only");
    return NF4{};
  }
  QTUNE_CHECK(name == "8da4w" || name == "int4wo" || name == "q4_0" || name == "q8_0", "unknown quantization scheme '",
              name, "' (valid: 8da4w, int4wo, nf4, q4_0, q8_0)");
  QTUNE_CHECK(!group_size || *group_size > 0, "scheme ", name, ": a group size must be positive, got ", *group_size);
  return std::visit([](const auto& s) -> WeightScheme { return s; }, parse_linear_scheme(name, group_size.value_or(0)));
}

std::string weight_scheme_name(const WeightScheme& scheme) {
  return std::visit(
      Overloaded{[](const NF4&) { return std::string("nf4"); },
                 [](const Float8Weights& s) { return "fp8 " + std::string(float8_recipe_name(s.config.recipe)); },
                 [](const auto& s) { return scheme_name(LinearScheme{s}); }},
      scheme);
}

int64_t weight_scheme_group_size(const WeightScheme& scheme) {
  return std::visit(Overloaded{[](const NF4&) { return NF4Tensor::kBlockSize; },
                               [](const Float8Weights&) -> int64_t {
                                 QTUNE_FAIL("fp8 weights have per-row or per-tensor scales, not groups");
                               },
                               [](const auto& s) { return group_size_of(LinearScheme{s}); }},
                    scheme);
}

bool takes_group_size(const WeightScheme& scheme) {
  return std::holds_alternative<Int8DynActInt4Weight>(scheme) || std::holds_alternative<Int4WeightOnly>(scheme);
}

void check_weight_scheme_fits(const WeightScheme& scheme, int64_t out_features, int64_t in_features,
                              std::string_view fqn) {
  std::visit(Overloaded{[](const NF4&) {},
                        [&](const Float8Weights&) {
                          QTUNE_CHECK(in_features % 16 == 0 && out_features % 16 == 0, "fp8: layer '", fqn, "' is ",
                                      out_features, " x ", in_features,
                                      "; fp8 GEMMs need both dims to be multiples of 16 (leave the layer out)");
                        },
                        [&](const auto& s) { check_scheme_fits(LinearScheme{s}, in_features, fqn); }},
             scheme);
}

ModulePtr quantize_linear(const Tensor& weight, const Tensor& bias, const WeightScheme& scheme, std::string_view fqn) {
  QTUNE_CHECK(weight.defined() && weight.dim() == 2, "quantize '", fqn, "': the weight must be [out, in], got ",
              weight.defined() ? shape_str(weight.shape()) : std::string("undefined"));
  QTUNE_CHECK(weight.device().is_cpu(), "quantize '", fqn, "': the weight is on ", weight.device().str(),
              "; the quantized modules are built on CPU");
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
