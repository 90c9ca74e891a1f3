#include "quant/float8.h"

#include "engine/check.h"
#include "ops/nn/linear.h"
#include "quant/float8_frozen_linear.h"
#include "quant/module_swap.h"

namespace qtune::quant {
namespace {

bool is_linear(const Module& m) { return dynamic_cast<const nn::Linear*>(&m) != nullptr; }

}  // namespace

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
