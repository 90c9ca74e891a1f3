#include "tools/recipes/recipe.h"

#include <array>
#include <string>
#include <utility>

#include "engine/check.h"

namespace qtune::recipes {
namespace {

constexpr std::array<std::pair<Recipe, std::string_view>, 5> kNames = {{{Recipe::full, "full"},
                                                                        {Recipe::qat, "qat"},
                                                                        {Recipe::lora, "lora"},
                                                                        {Recipe::qlora, "qlora"},
                                                                        {Recipe::qat_lora, "qat_lora"}}};

}  // namespace

Recipe parse_recipe(std::string_view name) {
  std::string known;
  for (const auto& [recipe, text] : kNames) {
    if (name == text) return recipe;
    known += (known.empty() ? "" : ", ") + std::string(text);
  }
  QTUNE_FAIL("unknown recipe '", name, "' (recipes: ", known, ")");
}

std::string_view recipe_name(Recipe recipe) {
  for (const auto& [r, text] : kNames)
    if (r == recipe) return text;
  QTUNE_FAIL("recipe_name: not a Recipe (", static_cast<int>(recipe), ")");
}

std::string_view recipe_names() {
  static const std::string names = [] {
    std::string joined;
    for (const auto& [recipe, text] : kNames) joined += (joined.empty() ? "" : " | ") + std::string(text);
    return joined;
  }();
  return names;
}

bool trains_adapters(Recipe recipe) {
  return recipe == Recipe::lora || recipe == Recipe::qlora || recipe == Recipe::qat_lora;
}

bool fake_quantizes(Recipe recipe) { return recipe == Recipe::qat || recipe == Recipe::qat_lora; }

}  // namespace qtune::recipes
