#pragma once
// A Llama model as one GGUF v3 file that llama.cpp runs (docs/numerics.md §8, §9): llama.cpp's metadata, the
// tokenizer, tensors under llama.cpp's names with the q/k rows in its RoPE order, 2-D weights in the chosen type
// and norms in F32. Q8_0 and Q4_0 blocks come from the row codecs QAT's q8_0 / q4_0 fake quantization uses
// (engine/numerics/ggml_blocks.h), so a model trained with that fake quantization is written as exactly the
// weights it trained with.
#include <optional>
#include <string>
#include <string_view>

#include "data/tokenizer.h"
#include "engine/io/ggml_type.h"
#include "models/llama.h"
#include "models/tensor_reader.h"

namespace qtune::models {

// The file types of `qtune export --format gguf --type`, with llama.cpp's general.file_type numbers.
enum class GgufFileType { f32 = 0, f16 = 1, q4_0 = 2, q8_0 = 7, q4_k_m = 15, bf16 = 32 };

std::optional<GgufFileType> gguf_file_type_from_name(std::string_view name);  // "f32", "q4_0", ...
std::string_view gguf_file_type_name(GgufFileType t);

// The type tensor `hf_name` of `shape` in a model of `config` is written in: 1-D tensors F32; 2-D ones the file
// type's, except that a Q4_0 file keeps the embedding and the output head in Q8_0 (the projections are what q4_0
// QAT trains), and a Q4_K_M file mixes types as llama-quantize does (docs/numerics.md §9). A row that is not a
// whole number of blocks falls back as llama-quantize falls back (Q4_K to Q5_0, Q6_K to Q8_0, then F16).
io::GgmlType gguf_tensor_type(std::string_view hf_name, const Shape& shape, GgufFileType type,
                              const LlamaConfig& config);

struct GgufExportOptions {
  GgufFileType type = GgufFileType::f16;
  const data::Tokenizer* tokenizer = nullptr;  // required: llama.cpp cannot run a model without one
  std::optional<std::string> chat_template = std::nullopt;
  std::string name = "";  // general.name
  TensorReader read{};
};

// Writes `path` atomically, one converted tensor in memory beside the model at a time, tensors and keys in the
// order llama-quantize writes them (so a q4_k_m export is byte for byte llama-quantize's file made from the f32
// export): tensors outside the blocks by name, then each block's by name; general.quantization_version and
// general.file_type last. Llama 3 rope scaling adds rope_freqs.weight (the factors llama.cpp divides each frequency
// by); tied embeddings write token_embd.weight alone, which llama.cpp then uses as the output head. A weight that
// holds NaN or infinity is refused by name, as llama-quantize refuses it.
void save_gguf(Llama& model, const std::string& path, const GgufExportOptions& options);

}  // namespace qtune::models
