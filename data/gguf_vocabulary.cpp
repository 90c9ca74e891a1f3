#include "data/gguf_vocabulary.h"

#include <climits>
#include <vector>

#include "data/bpe_regex.h"
#include "engine/check.h"

namespace qtune::data {
namespace {

// llama.cpp's name for a byte-level BPE pre-tokenizer, from the regexes it splits with.
std::string bpe_pre_name(const VocabularyTable& table) {
  const std::vector<std::string>& patterns = table.split_patterns;
  if (patterns == std::vector<std::string>{kLlama3SplitPattern} && !table.byte_level_regex) return "llama-bpe";
  if (patterns.empty() && table.byte_level_regex) return "gpt-2";
  std::string shown;
  for (const std::string& p : patterns) shown.append(shown.empty() ? "\"" : ", \"").append(p, 0, 80).append("\"");
  QTUNE_FAIL("GGUF export: the tokenizer splits text with ", patterns.size(), " regex(es) ", shown,
             table.byte_level_regex ? " and GPT-2's" : "",
             ", which is neither GPT-2's nor Llama 3's pre-tokenizer: llama.cpp would tokenize differently");
}

}  // namespace

void append_gguf_tokenizer(io::GgufMetadata& metadata, const Tokenizer& tokenizer,
                           const std::optional<std::string>& chat_template, int64_t vocab_size) {
  using io::GgufValue;
  VocabularyTable table = tokenizer.vocabulary();
  QTUNE_CHECK(static_cast<int64_t>(table.pieces.size()) <= vocab_size, "GGUF export: the tokenizer has ",
              table.pieces.size(), " tokens, more than the model's vocab_size ", vocab_size);
  for (auto id = static_cast<int64_t>(table.pieces.size()); id < vocab_size; ++id) {
    table.pieces.push_back("[PAD" + std::to_string(id) + "]");
    table.types.push_back(TokenType::unused);
    if (!table.scores.empty()) table.scores.push_back(0.0f);
  }
  const bool sentencepiece = tokenizer.kind() == "sentencepiece";
  auto add = [&](const char* key, GgufValue value) { metadata.emplace_back(key, std::move(value)); };
  add("tokenizer.ggml.model", GgufValue::string(sentencepiece ? "llama" : "gpt2"));
  add("tokenizer.ggml.pre", GgufValue::string(sentencepiece ? "default" : bpe_pre_name(table)));
  std::vector<int32_t> types;
  types.reserve(table.types.size());
  for (const TokenType t : table.types) types.push_back(static_cast<int32_t>(t));
  add("tokenizer.ggml.tokens", GgufValue::strings(std::move(table.pieces)));
  if (sentencepiece) add("tokenizer.ggml.scores", GgufValue::f32s(table.scores));
  add("tokenizer.ggml.token_type", GgufValue::i32s(types));
  if (!sentencepiece) {
    std::vector<std::string> merges;
    merges.reserve(table.merges.size());
    for (const auto& [left, right] : table.merges) merges.push_back(std::string(left).append(" ").append(right));
    add("tokenizer.ggml.merges", GgufValue::strings(std::move(merges)));
    if (table.add_prefix_space) add("tokenizer.ggml.add_space_prefix", GgufValue::boolean(true));
  }
  if (table.bos) add("tokenizer.ggml.bos_token_id", GgufValue::u32(static_cast<uint32_t>(*table.bos)));
  if (table.eos) add("tokenizer.ggml.eos_token_id", GgufValue::u32(static_cast<uint32_t>(*table.eos)));
  if (table.unk) add("tokenizer.ggml.unknown_token_id", GgufValue::u32(static_cast<uint32_t>(*table.unk)));
  // Llama tokenizers put bos before a prompt (HF add_bos_token; qtune generate does the same).
  add("tokenizer.ggml.add_bos_token", GgufValue::boolean(table.bos.has_value()));
  add("tokenizer.ggml.add_eos_token", GgufValue::boolean(false));
  if (chat_template) add("tokenizer.chat_template", GgufValue::string(*chat_template));
}

namespace {

std::optional<int32_t> optional_id(const io::GgufFile& file, const char* key) {
  const io::GgufValue* v = file.find(key);
  if (!v) return std::nullopt;
  const int64_t id = v->to_int(key);
  QTUNE_CHECK(id >= 0 && id < INT32_MAX, file.path(), ": ", key, " = ", id, " is not a token id");
  return static_cast<int32_t>(id);
}

}  // namespace

std::unique_ptr<Tokenizer> load_gguf_tokenizer(const io::GgufFile& file) {
  const std::string& where = file.path();
  QTUNE_CHECK(file.find("tokenizer.ggml.model"), where,
              ": no tokenizer.ggml.model key: the file embeds no tokenizer (pass --tokenizer)");
  const std::string model = file.at("tokenizer.ggml.model").to_string("tokenizer.ggml.model");
  VocabularyTable table;
  table.pieces = file.at("tokenizer.ggml.tokens").to_strings("tokenizer.ggml.tokens");
  const size_t n = table.pieces.size();
  QTUNE_CHECK(n > 0, where, ": tokenizer.ggml.tokens is empty");
  if (const io::GgufValue* types = file.find("tokenizer.ggml.token_type")) {
    for (const int32_t t : types->to_ints("tokenizer.ggml.token_type")) {
      QTUNE_CHECK(t >= 1 && t <= 6, where, ": tokenizer.ggml.token_type holds ", t, " (1 to 6 are token types)");
      table.types.push_back(static_cast<TokenType>(t));
    }
    QTUNE_CHECK(table.types.size() == n, where, ": tokenizer.ggml.token_type has ", table.types.size(), " entries for ",
                n, " tokens");
  } else {
    table.types.assign(n, TokenType::normal);
  }
  table.bos = optional_id(file, "tokenizer.ggml.bos_token_id");
  table.eos = optional_id(file, "tokenizer.ggml.eos_token_id");
  table.unk = optional_id(file, "tokenizer.ggml.unknown_token_id");
  if (model == "llama") {
    if (const io::GgufValue* scores = file.find("tokenizer.ggml.scores")) {
      table.scores = scores->to_floats("tokenizer.ggml.scores");
      QTUNE_CHECK(table.scores.size() == n, where, ": tokenizer.ggml.scores has ", table.scores.size(), " entries for ",
                  n, " tokens");
    }
    const io::GgufValue* prefix = file.find("tokenizer.ggml.add_space_prefix");
    return sentencepiece_from_table(table, prefix ? prefix->to_bool("tokenizer.ggml.add_space_prefix") : true, where);
  }
  QTUNE_CHECK(model == "gpt2", where, ": tokenizer.ggml.model '", model,
              "' is not one qtune reads (llama: SentencePiece, gpt2: byte-level BPE)");
  const io::GgufValue* pre_value = file.find("tokenizer.ggml.pre");
  const std::string pre = pre_value ? pre_value->to_string("tokenizer.ggml.pre") : "default";
  if (pre == "llama-bpe" || pre == "llama3") {
    table.split_patterns = {kLlama3SplitPattern};
    table.ignore_merges = true;  // llama.cpp's llama-bpe emits a word that is a token whole, as Llama 3's file says
  } else if (pre == "gpt-2" || pre == "default") {
    table.byte_level_regex = true;
  } else {
    QTUNE_FAIL(where, ": tokenizer.ggml.pre '", pre,
               "' names a pre-tokenizer qtune does not have (llama-bpe, gpt-2 and default are read)");
  }
  if (const io::GgufValue* prefix = file.find("tokenizer.ggml.add_space_prefix"))
    table.add_prefix_space = prefix->to_bool("tokenizer.ggml.add_space_prefix");
  for (const std::string& merge : file.at("tokenizer.ggml.merges").to_strings("tokenizer.ggml.merges")) {
    const size_t space = merge.find(' ');
    QTUNE_CHECK(space != std::string::npos && merge.find(' ', space + 1) == std::string::npos, where,
                ": tokenizer.ggml.merges holds \"", merge, "\", not \"left right\"");
    table.merges.emplace_back(merge.substr(0, space), merge.substr(space + 1));
  }
  return bpe_from_table(table, where);
}

std::optional<std::string> gguf_chat_template(const io::GgufFile& file) {
  const io::GgufValue* v = file.find("tokenizer.chat_template");
  if (!v) return std::nullopt;
  return v->to_string("tokenizer.chat_template");
}

}  // namespace qtune::data
