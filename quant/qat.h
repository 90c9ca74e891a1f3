#pragma once
// The QAT module passes (docs/numerics.md §2), torchao's quantize_(model, QATConfig(...)):
//  - Prepare: every selected nn::Linear becomes a FakeQuantizedLinear, and every selected nn::Embedding a
//    FakeQuantizedEmbedding when config.embedding is set. Parameters stay the same tensor objects.
//  - Convert: every selected FakeQuantizedLinear becomes the real quantized module of its scheme
//    (Int8DynActInt4WeightLinear, Int4WeightOnlyLinear; for q4_0 / q8_0 an nn::Linear holding the values
//    llama.cpp will dequantize, so a GGUF export re-quantizes them losslessly), and every
//    FakeQuantizedEmbedding a QuantizedEmbedding. The converted model computes what the prepared one did.
// Both walk the model with quant::swap_modules. Every selected layer is checked before any is swapped, so a
// layer the scheme cannot take (its in_features not a multiple of the group size) leaves the model as it was.
#include <cstdint>
#include <string_view>

#include "engine/module.h"
#include "quant/qat_config.h"

namespace qtune::quant {

// Every module except the output head (`lm_head`, at any depth).
bool default_qat_filter(const Module& module, std::string_view fqn);

// Returns how many modules were swapped.
int64_t quantize_(Module& model, const QATConfig& config, const ModuleFilter& filter = default_qat_filter);

// The trainer's optimizer step, passed to every fake-quant module below `model` (fake_quant_after_n_steps).
void set_qat_step(Module& model, int64_t step);
// Switches fake quantization of every fake-quant module below `model` on or off.
void set_fake_quant_enabled(Module& model, bool on);

}  // namespace qtune::quant
