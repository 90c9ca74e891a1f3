#pragma once
// A tokenizer as GGUF's tokenizer.ggml.* keys describe it (docs/numerics.md §9), both ways: written the way
// llama.cpp's converter writes them (SentencePiece as model "llama" with scores and token types, byte-level BPE
// as model "gpt2" with merges and the pre-tokenizer llama.cpp knows by name), and read back into a tokenizer.
#include <optional>
#include <string>

#include <memory>
#include "data/tokenizer.h"

#include "engine/io/gguf_file.h"
#include "engine/io/gguf_value.h"

namespace qtune::data {

// Appends the tokenizer.ggml.* keys (and tokenizer.chat_template when given) to `metadata`. A byte-level BPE
// whose pre-tokenizer llama.cpp does not know (neither GPT-2's nor Llama 3's regex) is an Error naming it.
// The token list is padded with "[PAD<id>]" tokens of type unused up to `vocab_size` (the model's embedding rows),
// as llama.cpp's converter does: llama.cpp sizes the embedding from it.
void append_gguf_tokenizer(io::GgufMetadata& metadata, const Tokenizer& tokenizer,
                           const std::optional<std::string>& chat_template, int64_t vocab_size);

// The tokenizer a GGUF file embeds, as llama.cpp reads it ("llama": SentencePiece; "gpt2" with the pre-tokenizer
// "llama-bpe", "gpt-2" or "default": byte-level BPE). A missing or malformed key, or a vocabulary llama.cpp
// would read with an algorithm qtune does not have, is an Error naming the file and key.
std::unique_ptr<Tokenizer> load_gguf_tokenizer(const io::GgufFile& file);
// The chat template a GGUF file embeds (tokenizer.chat_template), if any.
std::optional<std::string> gguf_chat_template(const io::GgufFile& file);

}  // namespace qtune::data
