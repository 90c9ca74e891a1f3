#pragma once
// Where a Llama's tensors go in a GGUF file (docs/numerics.md §8, §9): llama.cpp's tensor names for the Hugging
// Face ones, and the row order of the q and k projections, which llama.cpp's RoPE reads as adjacent pairs
// (x[2i], x[2i+1]) where Hugging Face rotates halves (x[i], x[i + D/2]) within each head.
#include <optional>
#include <string>
#include <string_view>

#include "engine/tensor.h"

namespace qtune::models {

// "model.layers.3.self_attn.q_proj.weight" -> "blk.3.attn_q.weight"; nullopt for a name llama.cpp's Llama does
// not have.
std::optional<std::string> gguf_tensor_name(std::string_view hf_name);
// The inverse: "blk.3.attn_q.weight" -> "model.layers.3.self_attn.q_proj.weight"; nullopt for others
// (rope_freqs.weight, which qtune computes from the config, among them).
std::optional<std::string> hf_tensor_name(std::string_view gguf_name);

// The block number of "model.layers.N.*" or "blk.N.*"; nullopt for tensors outside the blocks.
std::optional<int64_t> layer_index(std::string_view name);

// Whether the GGUF tensor's rows are permuted for RoPE, and over how many heads: q over the attention heads,
// k over the key-value heads; 0 for every other tensor.
int64_t gguf_rope_heads(std::string_view hf_name, int64_t num_attention_heads, int64_t num_key_value_heads);

// w: [heads * head_dim, in], Hugging Face's rows -> llama.cpp's: within each head, row 2i + j takes the row
// j * head_dim / 2 + i (j in {0, 1}).
Tensor rope_rows_to_gguf(const Tensor& w, int64_t heads);
// The inverse of rope_rows_to_gguf.
Tensor rope_rows_from_gguf(const Tensor& w, int64_t heads);

}  // namespace qtune::models
