#pragma once
// LoRA adapters in Hugging Face PEFT's directory layout (docs/numerics.md §4):
//   adapter_model.safetensors  base_model.model.<module path>.lora_A.weight [r, in]
//                              base_model.model.<module path>.lora_B.weight [out, r]
//   adapter_config.json        r, lora_alpha, target_modules, lora_dropout, peft_type "LORA", ...
#include <string>

#include "models/llama.h"
#include "models/lora.h"
#include "models/peft_config.h"
#include "models/tensor_reader.h"

namespace qtune::models {

// Writes both files (each atomically; the weights first, so a directory with adapter_config.json is
// complete) in the model's dtype. Every LoRALinear of the model must have config's rank and alpha. `read` reads
// each adapter tensor (models/tensor_reader.h).
void save_adapter(Llama& model, const LoraConfig& config, const std::string& dir, const std::string& base_model_name,
                  const TensorReader& read = nullptr);

// Fills the model's adapters from <dir>, first applying LoRA per the adapter's config when the model has
// none. Everything is checked before the model changes: each tensor must belong to a module the config
// targets, with the adapter's rank and the module's shape, every targeted module must have both tensors,
// and a model that already has LoRA must have the adapter's targets, rank and alpha. Errors name the
// module and the mismatch.
void load_adapter(Llama& model, const std::string& dir);

}  // namespace qtune::models
