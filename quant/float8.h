#pragma once
// The float8 training pass (docs/numerics.md §3): swap the model's linears for Float8Linear.
#include <string_view>

#include "engine/module.h"
#include "quant/float8_linear.h"
#include "quant/float8_recipe.h"

namespace qtune::quant {

// Why the default pass leaves a linear in high precision, or "" when it converts it: the output head
// (`lm_head`) and linears whose in or out features are not a multiple of 16 (fp8 GEMMs need 16-aligned
// dims).
std::string_view float8_exclusion(const Module& linear, std::string_view fqn);

// Replaces every nn::Linear below `root` that `filter` selects by a Float8Linear sharing its tensors.
// A null filter selects every linear the default exclusions allow; a filter that selects an excluded
// linear is an error naming the layer and the rule. Returns how many linears were converted.
int64_t convert_to_float8(Module& root, const Float8LinearConfig& config, const ModuleFilter& filter = nullptr);

// The same selection, exclusions and errors, for a frozen base (LoRA over float8): every selected linear
// becomes a Float8FrozenLinear holding its weight once in e4m3 (quant/float8_frozen_linear.h).
int64_t convert_to_float8_frozen(Module& root, const Float8LinearConfig& config, const ModuleFilter& filter = nullptr);

}  // namespace qtune::quant
