#pragma once
// The float8 training recipes (docs/numerics.md §3) by name: what a config or a flag says, parsed once.
#include <cstdint>
#include <string_view>

namespace qtune::quant {

enum class Float8Recipe : uint8_t { tensorwise, rowwise, rowwise_with_gw_hp };

struct Float8LinearConfig {
  Float8Recipe recipe = Float8Recipe::tensorwise;
  bool pow2_scales = false;  // round every scale down to a power of two

  // The recipe with its table's scale rounding: power-of-two scales for the rowwise recipes.
  static Float8LinearConfig from_recipe(Float8Recipe recipe);
};

// "tensorwise" | "rowwise" | "rowwise_with_gw_hp"; anything else throws listing the valid names.
Float8Recipe parse_float8_recipe(std::string_view name);
std::string_view float8_recipe_name(Float8Recipe recipe);

}  // namespace qtune::quant
