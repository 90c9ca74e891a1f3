#pragma once
// Tokenizers of the files a model directory holds: a SentencePiece `tokenizer.model` (Llama 1/2
// style) or a byte-level BPE `tokenizer.json` (Llama 3 style). Both map text <-> token ids exactly as
// the reference libraries (Python `sentencepiece`, `tokenizers`) do.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace qtune::data {

// Kinds of vocabulary entries, numbered as llama.cpp's GGUF key `tokenizer.ggml.token_type` numbers them.
enum class TokenType : int32_t { normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6 };

// A tokenizer's whole vocabulary as tables: what a GGUF file stores of it (docs/numerics.md §9).
struct VocabularyTable {
  std::vector<std::string> pieces;                          // by id; an id no entry uses is "[PAD<id>]" of type unused
  std::vector<float> scores;                                // by id: SentencePiece's piece scores; empty for BPE
  std::vector<TokenType> types;                             // by id
  std::vector<std::pair<std::string, std::string>> merges;  // BPE: in rank order
  // BPE: the regexes of the pre-tokenizer's Split steps, in order, then whether the ByteLevel step splits with
  // its own (GPT-2's) regex; and whether a word that is a vocabulary piece is emitted whole (Llama 3).
  std::vector<std::string> split_patterns;
  bool byte_level_regex = false;
  bool add_prefix_space = false;  // BPE: a space put before the text (GPT-2 style files)
  bool ignore_merges = false;
  std::optional<int32_t> bos, eos, unk;
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Token ids of `text`; `add_bos` / `add_eos` prepend / append the special ids when the tokenizer
  // has them.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_bos = false, bool add_eos = false) const = 0;
  // The text of `ids`; special tokens (bos, eos, ...) are dropped.
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual std::optional<int32_t> bos_id() const = 0;
  virtual std::optional<int32_t> eos_id() const = 0;
  virtual std::string id_to_piece(int32_t id) const = 0;  // the vocabulary entry, for debugging
  virtual std::string kind() const = 0;                   // "sentencepiece" or "bpe"
  virtual VocabularyTable vocabulary() const = 0;
  // Writes the file load_tokenizer(dir) reads back as this tokenizer, atomically: tokenizer.model for
  // SentencePiece, tokenizer.json for byte-level BPE (a tokenizer that came from a GGUF file gets files of its own).
  virtual void save(const std::string& dir) const = 0;
};

// SentencePiece model file (BPE or unigram; byte fallback honoured).
std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& model_path);
// HF `tokenizer.json` with a ByteLevel BPE model (GPT-2 / Llama 3 family): vocab, merges, the Split
// pre-tokenizer regex (PCRE2), added/special tokens. Anything else in the file: an Error naming it and
// the JSON key. Its encode() refuses text that is not valid UTF-8 (an Error with the byte offset).
std::unique_ptr<Tokenizer> load_bpe_json(const std::string& json_path);
// Tokenizers rebuilt from their tables (a GGUF file's, data/gguf_vocabulary.h); `where` names the source in
// errors. SentencePiece: a BPE model over the pieces' scores with byte fallback, whitespace kept as written and,
// with add_dummy_prefix, a space put before the text -- how llama.cpp reads a "llama" vocabulary.
std::unique_ptr<Tokenizer> sentencepiece_from_table(const VocabularyTable& table, bool add_dummy_prefix,
                                                    const std::string& where);
std::unique_ptr<Tokenizer> bpe_from_table(const VocabularyTable& table, const std::string& where);
// `path` is a model directory, a GGUF file (its embedded tokenizer), a tokenizer.json (byte-level BPE) or any
// other file (a SentencePiece model). In a directory it picks `tokenizer.json` when there is one, else
// `tokenizer.model`; an Error when neither. A tokenizer.json this reader rejects yields to a tokenizer.model beside it
// (Llama 1/2 checkpoints ship a SentencePiece-style tokenizer.json converted from their tokenizer.model).
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

struct SentencePieceTrainOptions {
  int64_t vocab_size = 4096;
  std::string model_type = "bpe";  // "bpe" or "unigram"
  bool byte_fallback = true;
  double character_coverage = 0.9995;
  int64_t max_sentence_length = 16384;
  int32_t num_threads = 2;
  uint64_t seed = 0;  // sentencepiece's own seed; training is deterministic for a fixed input and seed
};
// Trains on a UTF-8 text file (one sentence per line) and writes `out_model` (a .model file,
// written atomically). Ids: 0 unk, 1 bos, 2 eos, no pad, and Llama's normalizer settings: no Unicode
// normalization, a dummy prefix space, whitespace kept, digits split. Errors (missing input, a
// vocabulary larger than the text supports) are qtune::Error naming the input.
void train_sentencepiece(const std::string& input_path, const std::string& out_model,
                         const SentencePieceTrainOptions& options = {});

// Turns a stream of generated ids into text pieces as they become printable: holds back bytes of an
// unfinished UTF-8 character (and the U+FFFD a decoder prints for them) and keeps SentencePiece's
// leading-space handling right by decoding each new id after a few ids of context, so concatenating
// every returned piece equals decode(all generated ids) -- with a prompt, the text decode(prompt + ids)
// adds after decode(prompt). Each push decodes only the ids since the text was last complete.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, std::vector<int32_t> prompt_ids = {});
  std::string push(int32_t id);  // the newly printable text (possibly empty)
  std::string finish();          // whatever is still held back

 private:
  static constexpr size_t kContext = 4;  // ids kept before new ones when the window moves on
  size_t window_start() const;           // where a window ending at the last id should begin
  std::string window_text() const;       // decode(ids_[window_begin_:])

  const Tokenizer& tokenizer_;
  std::vector<int32_t> ids_;  // prompt and generated ids
  size_t window_begin_ = 0;   // first id of the decoded window
  size_t shown_ = 0;          // bytes of window_text() already returned (or part of the prompt)
};

}  // namespace qtune::data
