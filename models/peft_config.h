#pragma once
// adapter_config.json, the description of a LoRA adapter in Hugging Face PEFT's layout (models/peft_adapter.h
// reads and writes the weights beside it).
#include <string>

#include "models/lora.h"

namespace qtune::models {

// Parses <dir>/adapter_config.json (seed is left 0). Fails naming the file and key on malformed JSON, a
// missing or mistyped key, and on PEFT options qtune does not implement (use_rslora, use_dora,
// rank_pattern, alpha_pattern, bias other than "none", fan_in_fan_out, layers_to_transform).
LoraConfig load_adapter_config(const std::string& dir);

}  // namespace qtune::models
