#pragma once
// A tokenizer as GGUF's tokenizer.ggml.* keys describe it (docs/numerics.md §9), the way llama.cpp's
// convert_hf_to_gguf.py writes them: SentencePiece as model "llama" with scores and token types, byte-level BPE
// as model "gpt2" with merges and the pre-tokenizer llama.cpp knows by name.
#include <optional>
#include <string>

#include "data/tokenizer.h"
#include "engine/io/gguf_value.h"

namespace qtune::models {

// Appends the tokenizer.ggml.* keys (and tokenizer.chat_template when given) to `metadata`. A byte-level BPE
// whose pre-tokenizer llama.cpp does not know (neither GPT-2's nor Llama 3's regex) is an Error naming it.
void append_gguf_tokenizer(io::GgufMetadata& metadata, const data::Tokenizer& tokenizer,
                           const std::optional<std::string>& chat_template);

}  // namespace qtune::models
