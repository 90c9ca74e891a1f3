#pragma once
// The recipes of `qtune run`, typed once where a name enters (the command line, a config's `recipe` key)
// and asked about through these functions everywhere else.
#include <cstdint>
#include <string_view>

namespace qtune::recipes {

enum class Recipe : uint8_t {
  full,      // every parameter trains
  qat,       // every parameter trains, through fake quantization
  lora,      // LoRA adapters over a frozen base
  qlora,     // LoRA adapters over a frozen NF4 base
  qat_lora,  // LoRA adapters over a frozen, fake-quantized base
};

// "full" | "qat" | "lora" | "qlora" | "qat_lora"; anything else throws listing them.
Recipe parse_recipe(std::string_view name);
std::string_view recipe_name(Recipe recipe);
// "full | qat | lora | qlora | qat_lora": for help texts and messages.
std::string_view recipe_names();

// Only LoRA adapters train (lora, qlora, qat_lora); checkpoints hold PEFT adapter files.
bool trains_adapters(Recipe recipe);
// The linears train through fake quantization (qat, qat_lora).
bool fake_quantizes(Recipe recipe);

}  // namespace qtune::recipes
