#pragma once
// The LoRA pass over a Llama (docs/numerics.md §4): wrap the target linears in LoRALinear, freeze everything
// else, and merge the adapters back into plain linears for export.
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "models/llama.h"
#include "models/lora_linear.h"
#include "quant/weight_quantize.h"

namespace qtune::models {

struct LoraConfig {
  int64_t rank = 8;
  double alpha = 16;
  double dropout = 0;
  std::vector<std::string> targets = {"q_proj", "v_proj"};
  uint64_t seed = 0;  // lora_A's init (dropout draws from the default generator: see LoRAOptions)
};

// The target names apply_lora accepts: q_proj k_proj v_proj o_proj gate_proj up_proj down_proj lm_head.
const std::vector<std::string>& lora_target_names();

// The frozen base QLoRA trains over (docs/numerics.md §4): every decoder projection in NF4, the output head
// too when it is one of config.targets. The qlora recipe stores it so, and `qtune export --base-nf4`
// rebuilds it before merging.
quant::ModelQuantization qlora_base(const LoraConfig& config);

// (in_features, out_features) of a module apply_lora can wrap; nullopt for any other module.
std::optional<std::pair<int64_t, int64_t>> lora_base_features(Module& base);

// Wraps every module named by config.targets (in every layer) in a LoRALinear of the model's dtype and
// device, whatever its base: nn::Linear, an NF4 base (quant::convert_to_nf4 first: QLoRA), a QAT
// FakeQuantizedLinear (QAT+LoRA: the LoRA branch sees the un-quantized x), a Float8Linear or a
// Float8FrozenLinear (the float8 base stored once in e4m3). Then freezes
// every parameter that is not a LoRA adapter. lora_A is drawn from Generator(config.seed) in module order.
// Fails on an unknown or duplicated target name (listing the valid ones), on `lm_head` in a model with
// tied embeddings, and on a model that already has LoRA modules. Returns how many modules were wrapped.
int64_t apply_lora(Llama& model, const LoraConfig& config);

// Every LoRALinear below root with its fully qualified name, in module order.
std::vector<std::pair<std::string, LoRALinear*>> lora_modules(Module& root);
// The adapters (lora_A and lora_B weights) of every LoRALinear below root: what the optimizer trains.
std::vector<Tensor> lora_parameters(Module& root);

// Replaces every LoRALinear by a plain nn::Linear of the model's dtype holding
// W + (alpha / rank) * B @ A computed in f32, where W is the base's weight in f32 (an NF4 base:
// dequantized; a QAT base: its float weight, without fake quantization). The bias is kept. The merged
// linears are frozen like the rest of the base. save_llama then writes a standard HF checkpoint.
// Returns how many modules were merged.
int64_t merge_lora(Llama& model);

}  // namespace qtune::models
