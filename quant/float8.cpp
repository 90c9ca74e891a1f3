#include "quant/float8.h"

#include <string>

#include "engine/check.h"
#include "ops/nn/linear.h"
#include "quant/float8_frozen_linear.h"
#include "quant/module_swap.h"

namespace qtune::quant {
namespace {

constexpr Float8Recipe kRecipes[] = {Float8Recipe::tensorwise, Float8Recipe::rowwise, Float8Recipe::rowwise_with_gw_hp};

bool is_linear(const Module& m) { return dynamic_cast<const nn::Linear*>(&m) != nullptr; }

}  // namespace

Float8LinearConfig Float8LinearConfig::from_recipe(Float8Recipe recipe) {
  return {recipe, recipe != Float8Recipe::tensorwise};
}

std::string_view float8_recipe_name(Float8Recipe recipe) {
  switch (recipe) {
    case Float8Recipe::tensorwise:
      return "tensorwise";
    case Float8Recipe::rowwise:
      return "rowwise";
    case Float8Recipe::rowwise_with_gw_hp:
      return "rowwise_with_gw_hp";
  }
  QTUNE_FAIL("float8: unknown recipe ", static_cast<int>(recipe));
}

Float8Recipe parse_float8_recipe(std::string_view name) {
  std::string valid;
  for (Float8Recipe r : kRecipes) {
    if (float8_recipe_name(r) == name) return r;
    valid += (valid.empty() ? "" : ", ") + std::string(float8_recipe_name(r));
  }
  QTUNE_FAIL("float8: unknown recipe '", name, "' (valid: ", valid, ")");
}

std::string_view float8_exclusion(const Module& linear, std::string_view fqn) {
  if (fqn == "lm_head" || fqn.ends_with(".lm_head")) return "the output head stays in high precision";
  const auto* l = dynamic_cast<const nn::Linear*>(&linear);
  if (l != nullptr && (l->in_features() % 16 != 0 || l->out_features() % 16 != 0))
    return "fp8 GEMMs need in and out features that are multiples of 16";
  return "";
}

namespace {

// The linears a float8 pass converts: the filter's choice (or, without one, every linear the default
// exclusions allow); a filter that selects an excluded linear is an error naming the pass.
ModuleFilter float8_selection(const ModuleFilter& filter, std::string_view pass) {
  return [filter, pass](const Module& m, std::string_view fqn) {
    if (!is_linear(m)) return false;
    if (!filter) return float8_exclusion(m, fqn).empty();
    if (!filter(m, fqn)) return false;
    const std::string_view why = float8_exclusion(m, fqn);
    const auto& l = static_cast<const nn::Linear&>(m);
    QTUNE_CHECK(why.empty(), pass, ": cannot convert '", fqn, "' (Linear ", l.in_features(), " -> ", l.out_features(),
                "): ", why, "; leave it out of the filter");
    return true;
  };
}

}  // namespace

int64_t convert_to_float8(Module& root, const Float8LinearConfig& config, const ModuleFilter& filter) {
  return swap_modules(
      root, float8_selection(filter, "convert_to_float8"), [&](Module& m, std::string_view) -> ModulePtr {
        return std::make_shared<Float8Linear>(static_cast<nn::Linear&>(m), config.recipe, config.pow2_scales);
      });
}

int64_t convert_to_float8_frozen(Module& root, const Float8LinearConfig& config, const ModuleFilter& filter) {
  return swap_modules(root, float8_selection(filter, "convert_to_float8_frozen"),
                      [&](Module& m, std::string_view) -> ModulePtr {
                        return std::make_shared<Float8FrozenLinear>(static_cast<nn::Linear&>(m), config);
                      });
}

}  // namespace qtune::quant
