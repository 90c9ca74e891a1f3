#pragma once
// Quantized Llama checkpoints (docs/quantized-format.md): a Hugging Face model directory whose config.json
// carries a `quantization_config` ({"quant_method": "qtune", "format_version": 1, "scheme", "group_size",
// "embedding", "head"}) and whose model.safetensors holds each quantized module's parts.
#include <memory>
#include <optional>
#include <string>

#include "models/hf_checkpoint.h"
#include "models/llama.h"
#include "models/quantization_config.h"
#include "quant/weight_quantize.h"

namespace qtune::models {

// Writes config.json (the model's config, torch_dtype = the dtype of its unquantized tensors, plus the
// quantization_config) and model.safetensors into `dir`, each file atomically, the config last. `model`
// must hold what quantize_llama(model, quantization) makes; anything else fails naming the layer.
// Unquantized tensors (norms, an unquantized embedding or head) are written in the dtype config.json's
// torch_dtype names (the checkpoint the model came from).
void save_quantized_llama(Llama& model, const quant::ModelQuantization& quantization, const std::string& dir);

// Builds the model with its projections deferred and installs every quantized module from its stored
// parts (no dense weight is materialized for them). Missing, unexpected or mis-shaped tensors fail naming
// the file, the tensor, the layer and the rule, listing every problem at once. CPU only.
std::shared_ptr<Llama> load_quantized_llama(const std::string& dir, const LoadOptions& options = {});

// Any model qtune reads: a GGUF file (load_gguf_llama), or a model directory: load_quantized_llama when
// config.json has a quantization_config, load_llama otherwise.
std::shared_ptr<Llama> load_model(const std::string& dir, const LoadOptions& options = {});

}  // namespace qtune::models
