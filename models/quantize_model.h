#pragma once
// Post-training quantization of a whole Llama (`qtune quantize`, `qtune eval --quantize`): every decoder
// projection becomes its scheme's real module, the embedding and head too when asked.
#include <cstdint>
#include <functional>
#include <string_view>

#include "models/llama.h"
#include "quant/weight_quantize.h"

namespace qtune::models {

// "model.layers.N.self_attn.{q,k,v,o}_proj" or "model.layers.N.mlp.{gate,up,down}_proj".
bool is_decoder_projection(std::string_view fqn);

// What a whole-model quantization does to the module at `fqn`: `linear` for every decoder projection and,
// with `head`, the output head (they take the scheme); `embedding` for the token embedding with `embedding`
// (the int4 table); `none` for everything else. The one answer to "which modules does this quantization
// touch": quantize_llama, quantized checkpoints, the qlora recipe, `qtune quantize --report` and the
// memory bench all ask it.
enum class QuantizedPart : uint8_t { none, linear, embedding };
QuantizedPart quantized_part(const quant::ModelQuantization& quantization, std::string_view fqn);

// A tied model's head is its embedding table, which Llama's forward multiplies densely: it takes neither
// `head` nor `embedding` (an Error saying so).
void check_tied_quantization(const LlamaConfig& config, const quant::ModelQuantization& quantization);

// Called for each module once its replacement is built and before it is swapped in (the original is
// still at `fqn` in the model): progress lines, a report comparing the two.
using QuantizeProgress = std::function<void(std::string_view fqn, Module& quantized)>;

// Checks every layer first (the scheme fits each projection's in_features; a tied model cannot take
// `head` or `embedding`: its head is the embedding table, which Llama's forward multiplies densely), so
// a model that cannot take the quantization is left unchanged; then swaps the modules in through
// quant::swap_modules + quant::quantize_linear. The model must be on CPU. Returns how many modules changed.
int64_t quantize_llama(Llama& model, const quant::ModelQuantization& quantization,
                       const QuantizeProgress& progress = nullptr);

}  // namespace qtune::models
