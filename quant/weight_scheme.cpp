#include "quant/weight_scheme.h"

#include "engine/check.h"
#include "engine/overloaded.h"
#include "quant/nf4_tensor.h"

namespace qtune::quant {

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
  return stored_weight_scheme(parse_linear_scheme(name, group_size.value_or(0)));
}

WeightScheme stored_weight_scheme(const LinearScheme& scheme) {
  return std::visit(Overloaded{[](const GgmlQ4_0&) -> WeightScheme { return Q4_0{}; },
                               [](const GgmlQ8_0&) -> WeightScheme { return Q8_0{}; },
                               [](const auto& s) -> WeightScheme { return s; }},
                    scheme);
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

}  // namespace qtune::quant
