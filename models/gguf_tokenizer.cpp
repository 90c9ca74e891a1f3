#include "models/gguf_tokenizer.h"

#include <vector>

#include "data/bpe_regex.h"
#include "engine/check.h"

namespace qtune::models {
namespace {

// llama.cpp's name for a byte-level BPE pre-tokenizer, from the regexes it splits with.
std::string bpe_pre_name(const std::vector<std::string>& patterns) {
  if (patterns == std::vector<std::string>{data::kLlama3SplitPattern}) return "llama-bpe";
  if (patterns == std::vector<std::string>{data::kGpt2SplitPattern}) return "gpt-2";
  std::string shown;
  for (const std::string& p : patterns) shown.append(shown.empty() ? "\"" : ", \"").append(p, 0, 80).append("\"");
  QTUNE_FAIL("GGUF export: the tokenizer splits text with ", patterns.size(), " regex(es) ", shown,
             ", which is neither GPT-2's nor Llama 3's pre-tokenizer: llama.cpp would tokenize differently");
}

}  // namespace

void append_gguf_tokenizer(io::GgufMetadata& metadata, const data::Tokenizer& tokenizer,
                           const std::optional<std::string>& chat_template) {
  using io::GgufValue;
  data::VocabularyTable table = tokenizer.vocabulary();
  const bool sentencepiece = tokenizer.kind() == "sentencepiece";
  auto add = [&](const char* key, GgufValue value) { metadata.emplace_back(key, std::move(value)); };
  add("tokenizer.ggml.model", GgufValue::string(sentencepiece ? "llama" : "gpt2"));
  add("tokenizer.ggml.pre", GgufValue::string(sentencepiece ? "default" : bpe_pre_name(table.split_patterns)));
  std::vector<int32_t> types;
  types.reserve(table.types.size());
  for (const data::TokenType t : table.types) types.push_back(static_cast<int32_t>(t));
  add("tokenizer.ggml.tokens", GgufValue::strings(std::move(table.pieces)));
  if (sentencepiece) add("tokenizer.ggml.scores", GgufValue::f32s(table.scores));
  add("tokenizer.ggml.token_type", GgufValue::i32s(types));
  if (!sentencepiece) {
    std::vector<std::string> merges;
    merges.reserve(table.merges.size());
    for (const auto& [left, right] : table.merges) merges.push_back(std::string(left).append(" ").append(right));
    add("tokenizer.ggml.merges", GgufValue::strings(std::move(merges)));
  }
  if (table.bos) add("tokenizer.ggml.bos_token_id", GgufValue::u32(static_cast<uint32_t>(*table.bos)));
  if (table.eos) add("tokenizer.ggml.eos_token_id", GgufValue::u32(static_cast<uint32_t>(*table.eos)));
  if (table.unk) add("tokenizer.ggml.unknown_token_id", GgufValue::u32(static_cast<uint32_t>(*table.unk)));
  // Llama tokenizers put bos before a prompt (HF add_bos_token; qtune generate does the same).
  add("tokenizer.ggml.add_bos_token", GgufValue::boolean(table.bos.has_value()));
  add("tokenizer.ggml.add_eos_token", GgufValue::boolean(false));
  if (chat_template) add("tokenizer.chat_template", GgufValue::string(*chat_template));
}

}  // namespace qtune::models
