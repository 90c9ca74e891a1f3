#include "quant/float8_recipe.h"

#include <string>

#include "engine/check.h"

namespace qtune::quant {
namespace {

constexpr Float8Recipe kRecipes[] = {Float8Recipe::tensorwise, Float8Recipe::rowwise, Float8Recipe::rowwise_with_gw_hp};

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

}  // namespace qtune::quant
