#pragma once
// A Llama from a GGUF file (docs/numerics.md §9), as llama.cpp would run it: the config from llama.cpp's
// metadata, every tensor dequantized (F32, F16, BF16, Q8_0, Q4_0) into the compute dtype with the q/k rows back in
// Hugging Face's order, so everything qtune does with a model directory it does with a GGUF file.
#include <memory>
#include <string>

#include "engine/io/gguf_file.h"
#include "models/hf_checkpoint.h"
#include "models/llama.h"

namespace qtune::models {

// The Hugging Face config of the model a GGUF file holds. Llama 3 rope scaling is recovered from
// rope_freqs.weight (the factor, and the band's low / high frequency factors and original context, with the
// low factor taken as 1: the factors depend on the band only through two numbers). An architecture other than
// llama, or a key llama.cpp reads that qtune's Llama has no equivalent for, is an Error naming the file and key.
LlamaConfig llama_config_from_gguf(const io::GgufFile& file);

// Builds the model and fills every parameter from the file, one dequantized tensor in memory beside the model at a
// time. A missing, unexpected or mis-shaped tensor fails naming it; a tied file (no output.weight) gives a tied
// model. With `keep_quantized`, each linear the file stores in a quantized type (Q4_0, Q8_0, Q4_K, ...) is not
// dequantized but kept in the file's blocks as a frozen quant::FrozenGgmlLinear (the q/k rows moved back to Hugging
// Face's order whole): the base of a LoRA run, in the file's size, computing with the weights llama.cpp runs.
std::shared_ptr<Llama> load_gguf_llama(const std::string& path, const LoadOptions& options = {},
                                       bool keep_quantized = false);

// Whether any linear of the model in `file` is stored in a quantized type (what load_gguf_llama's keep_quantized
// keeps).
bool gguf_has_quantized_linears(const io::GgufFile& file);

// Makes `model` (loaded from `file`) compute its quantized linears as llama.cpp's CPU backend does: each linear
// whose weight the file stores in a block type becomes a quant::FrozenGgmlLinear over the file's own blocks that
// rounds its inputs as llama.cpp does (Q8_0 blocks of 32 for Q4_0 / Q5_0 / Q8_0 weights, Q8_K blocks of 256 for the
// K-quants), whatever quantizer wrote the file. A quantized tied head (the embedding table) gets such a layer too.
// Returns how many linears were swapped.
int64_t compute_as_llama_cpp(Llama& model, const io::GgufFile& file);

}  // namespace qtune::models
