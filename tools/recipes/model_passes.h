#pragma once
// The model passes a run config asks for, as trainer hooks: QAT prepare (recipes qat, qat_lora), float8
// conversion (fp8.recipe), NF4 storage of the frozen decoder projections (qlora) and LoRA adapters (lora,
// qlora, qat_lora). QAT and float8 keep parameter names and tensors, so their checkpoints and final/ are
// ordinary float HF directories; the LoRA recipes store only the adapters, in HF PEFT layout
// (adapter_model.safetensors + adapter_config.json), and resume rebuilds the frozen base from model.path.
#include <optional>
#include <string>

#include "models/lora.h"
#include "quant/qat_config.h"
#include "quant/weight_quantize.h"
#include "tools/recipes/hooks.h"
#include "tools/recipes/run_config.h"

namespace qtune::recipes {

// The QAT prepare config of the quant section (scheme, group size, fake_quant_after_n_steps).
quant::QATConfig qat_config(const QuantSection& quant);

// The frozen base of recipe qlora (models::qlora_base of the lora section).
quant::ModelQuantization qlora_base(const RunConfig& config);

// The LoRA config of the lora section (seeded from train.seed).
models::LoraConfig lora_config(const RunConfig& config);

// Adds the config's passes to hooks.prepare_model (before any prepare_model already there) and, for QAT,
// a before_step that tells the fake quantizers the step. Reports what was converted through hooks.on_note.
// The LoRA recipes also set save_weights / load_weights (PEFT adapter files). A plain full run leaves the
// hooks as they are.
void add_model_passes(const RunConfig& config, TrainHooks& hooks);

// The `qtune export` command that merges a LoRA run's adapter into its base.
std::string lora_export_command(const RunConfig& config, const std::string& adapter_dir);

// The `qtune export --format gguf` command for a qat / qat_lora run whose scheme is one of llama.cpp's formats
// (q4_0, q8_0, ggml_q4_0: the GGUF file holds exactly the weights the run trained with); nullopt otherwise.
std::optional<std::string> gguf_export_command(const RunConfig& config, const std::string& final_dir);

// The `qtune quantize` command that turns a QAT run's float model into the scheme it trained for.
std::string qat_quantize_command(const QuantSection& quant, const std::string& model_dir);

}  // namespace qtune::recipes
