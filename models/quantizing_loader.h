#pragma once
// Loading a bf16/f32 Hugging Face checkpoint straight into a quantized Llama: each decoder projection is read from the
// memory-mapped files into a temporary of the compute dtype, quantized, and put in its slot, so no full-precision copy
// of the model ever exists.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "models/hf_checkpoint.h"
#include "models/llama.h"
#include "quant/weight_quantize.h"

namespace qtune::models {

// Called after each decoder layer is loaded: layer in [1, layers].
using LoadProgress = std::function<void(int64_t layer, int64_t layers)>;

// As load_llama followed by quantize_linear of every decoder projection (and of the embedding / head as
// `quantization` asks), bit for bit, but the dense projections are never all in memory: peak memory is the
// final model plus about one tensor. Every tensor name, shape and dtype and every scheme constraint (group
// sizes dividing in_features) is checked before any tensor data is read. CPU only. A tied model's
// embedding is also its head, so it takes neither embedding nor head quantization (an error).
std::shared_ptr<Llama> load_llama_quantized(const std::string& dir, const quant::ModelQuantization& quantization,
                                            const LoadOptions& options = {}, const LoadProgress& progress = {});

// The start of a sharded load (models/sharded_loading.h): the model load_llama_quantized(dir, *nf4_base) builds, or
// with plain nn::Linear projections when nf4_base is null (the embedding, the norms and the head loaded whole),
// every decoder projection reserved (Tensor::reserved): nothing of them is read or allocated until FSDP fills
// each rank's pieces. With the same checks first. CPU only; nf4_base's scheme must be NF4.
std::shared_ptr<Llama> load_llama_reserved(const std::string& dir, const quant::ModelQuantization* nf4_base,
                                           const LoadOptions& options = {});

}  // namespace qtune::models
