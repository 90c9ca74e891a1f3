// SentencePiece `tokenizer.model` files (Llama 1/2) through libsentencepiece, and training new ones.
// The library does the work; this file turns its Status results into qtune::Error naming the file.
#include <cstring>
#include <filesystem>
#include <string>
#include <unordered_map>

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include "data/tokenizer.h"
#include "engine/check.h"
#include "engine/io/atomic_file.h"

namespace qtune::data {

namespace {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& path) : path_(path) {
    // Checked here because the library's own message for a missing file does not say which file.
    QTUNE_CHECK(std::filesystem::is_regular_file(path), "SentencePiece model ", path, " not found");
    const auto status = sp_.Load(path);
    if (!status.ok()) QTUNE_FAIL("SentencePiece model ", path, " could not be loaded: ", status.message());
    QTUNE_CHECK(sp_.GetPieceSize() > 0, "SentencePiece model ", path, " has no pieces");
  }
  // A model proto built in memory; `where` names its source in errors.
  SentencePieceTokenizer(const std::string& serialized_model, const std::string& where) : path_(where) {
    const auto status = sp_.LoadFromSerializedProto(serialized_model);
    if (!status.ok()) QTUNE_FAIL(where, ": the SentencePiece vocabulary could not be loaded: ", status.message());
    QTUNE_CHECK(sp_.GetPieceSize() > 0, where, ": the SentencePiece vocabulary has no pieces");
  }

  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool add_eos) const override {
    std::vector<int> ids;
    const auto status = sp_.Encode(text, &ids);
    QTUNE_CHECK(status.ok(), path_, ": encoding failed: ", status.message());
    std::vector<int32_t> out;
    out.reserve(ids.size() + 2);
    if (add_bos && bos_id()) out.push_back(*bos_id());
    out.insert(out.end(), ids.begin(), ids.end());
    if (add_eos && eos_id()) out.push_back(*eos_id());
    return out;
  }

  std::string decode(const std::vector<int32_t>& ids) const override {
    const std::vector<int> sp_ids(ids.begin(), ids.end());
    for (const int id : sp_ids) {
      QTUNE_CHECK(id >= 0 && id < sp_.GetPieceSize(), path_, ": cannot decode id ", id,
                  ": outside the vocabulary (size ", sp_.GetPieceSize(), ")");
    }
    // Control symbols (bos, eos, pad) decode to nothing and byte pieces are reassembled into UTF-8 by
    // the library itself, with U+FFFD for bytes that do not form a character.
    std::string text;
    const auto status = sp_.Decode(sp_ids, &text);
    QTUNE_CHECK(status.ok(), path_, ": decoding failed: ", status.message());
    return text;
  }

  int64_t vocab_size() const override { return sp_.GetPieceSize(); }
  std::optional<int32_t> bos_id() const override { return non_negative(sp_.bos_id()); }
  std::optional<int32_t> eos_id() const override { return non_negative(sp_.eos_id()); }
  std::string id_to_piece(int32_t id) const override {
    QTUNE_CHECK(id >= 0 && id < sp_.GetPieceSize(), path_, ": id ", id, " is outside the vocabulary (size ",
                sp_.GetPieceSize(), ")");
    return sp_.IdToPiece(id);
  }
  std::string kind() const override { return "sentencepiece"; }

  void save(const std::string& dir) const override {
    const auto proto = sp_.serialized_model_proto();
    io::write_file_atomic((std::filesystem::path(dir) / "tokenizer.model").string(),
                          std::string_view(proto.data(), proto.size()));
  }

  VocabularyTable vocabulary() const override {
    VocabularyTable table;
    const int n = sp_.GetPieceSize();
    for (int id = 0; id < n; ++id) {
      table.pieces.push_back(sp_.IdToPiece(id));
      table.scores.push_back(sp_.GetScore(id));
      table.types.push_back(sp_.IsUnknown(id)   ? TokenType::unknown
                            : sp_.IsControl(id) ? TokenType::control
                            : sp_.IsUnused(id)  ? TokenType::unused
                            : sp_.IsByte(id)    ? TokenType::byte
                                                : TokenType::normal);
    }
    table.bos = bos_id();
    table.eos = eos_id();
    table.unk = non_negative(sp_.unk_id());
    return table;
  }

 private:
  // SentencePiece marks an absent special token with id -1.
  static std::optional<int32_t> non_negative(int id) { return id >= 0 ? std::optional<int32_t>(id) : std::nullopt; }

  std::string path_;
  sentencepiece::SentencePieceProcessor sp_;
};

std::string bool_flag(bool b) { return b ? "true" : "false"; }

// Protocol buffer wire format, the little of it a sentencepiece ModelProto needs.
void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}
void put_tag(std::string& out, uint32_t field, uint32_t wire_type) { put_varint(out, (field << 3) | wire_type); }
void put_bytes(std::string& out, uint32_t field, std::string_view bytes) {
  put_tag(out, field, 2);
  put_varint(out, bytes.size());
  out += bytes;
}
void put_int(std::string& out, uint32_t field, int64_t v) {
  put_tag(out, field, 0);
  put_varint(out, static_cast<uint64_t>(v));  // negative int32s are ten-byte varints, as protobuf writes them
}
void put_float(std::string& out, uint32_t field, float v) {
  put_tag(out, field, 5);
  char bytes[4];
  std::memcpy(bytes, &v, 4);
  out.append(bytes, 4);
}

// sentencepiece's ModelProto (field numbers of sentencepiece_model.proto): the pieces with their scores and
// types, a BPE trainer spec naming the special ids, and an identity normalizer.
std::string model_proto(const VocabularyTable& table, bool add_dummy_prefix) {
  std::string proto;
  bool byte_fallback = false;
  for (size_t id = 0; id < table.pieces.size(); ++id) {
    std::string piece;
    put_bytes(piece, 1, table.pieces[id]);
    put_float(piece, 2, id < table.scores.size() ? table.scores[id] : 0.0f);
    put_int(piece, 3, static_cast<int32_t>(table.types[id]));
    put_bytes(proto, 1, piece);
    byte_fallback = byte_fallback || table.types[id] == TokenType::byte;
  }
  const auto piece_of = [&](std::optional<int32_t> id, const char* fallback) {
    return id ? table.pieces[static_cast<size_t>(*id)] : std::string(fallback);
  };
  std::string trainer;
  put_int(trainer, 3, 2);  // model_type BPE
  put_int(trainer, 4, static_cast<int64_t>(table.pieces.size()));
  put_int(trainer, 26, 1);  // allow_whitespace_only_pieces: runs of spaces stay one word, as in llama.cpp
  put_int(trainer, 35, byte_fallback ? 1 : 0);
  put_int(trainer, 40, table.unk.value_or(-1));
  put_int(trainer, 41, table.bos.value_or(-1));
  put_int(trainer, 42, table.eos.value_or(-1));
  put_int(trainer, 43, -1);
  put_bytes(trainer, 45, piece_of(table.unk, "<unk>"));
  put_bytes(trainer, 46, piece_of(table.bos, "<s>"));
  put_bytes(trainer, 47, piece_of(table.eos, "</s>"));
  put_bytes(proto, 2, trainer);
  std::string normalizer;
  put_bytes(normalizer, 1, "identity");
  put_int(normalizer, 3, add_dummy_prefix ? 1 : 0);
  put_int(normalizer, 4, 0);  // remove_extra_whitespaces
  put_int(normalizer, 5, 1);  // escape_whitespaces
  put_bytes(proto, 3, normalizer);
  return proto;
}

}  // namespace

std::unique_ptr<Tokenizer> sentencepiece_from_table(const VocabularyTable& table, bool add_dummy_prefix,
                                                    const std::string& where) {
  QTUNE_CHECK(!table.pieces.empty() && table.types.size() == table.pieces.size() &&
                  (table.scores.empty() || table.scores.size() == table.pieces.size()),
              where, ": a SentencePiece vocabulary needs its pieces, and one type (and score) per piece");
  for (const auto id : {table.bos, table.eos, table.unk})
    QTUNE_CHECK(!id || (*id >= 0 && static_cast<size_t>(*id) < table.pieces.size()), where, ": special token id ", *id,
                " is outside the vocabulary (size ", table.pieces.size(), ")");
  QTUNE_CHECK(table.unk.has_value(), where, ": a SentencePiece vocabulary needs an unknown token");
  return std::make_unique<SentencePieceTokenizer>(model_proto(table, add_dummy_prefix), where);
}

std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& model_path) {
  return std::make_unique<SentencePieceTokenizer>(model_path);
}

void train_sentencepiece(const std::string& input_path, const std::string& out_model,
                         const SentencePieceTrainOptions& options) {
  namespace fs = std::filesystem;
  QTUNE_CHECK(fs::is_regular_file(input_path), "tokenizer training input ", input_path, " not found");
  QTUNE_CHECK(options.model_type == "bpe" || options.model_type == "unigram", "tokenizer training on ", input_path,
              ": model type must be bpe or unigram, not '", options.model_type, "'");
  QTUNE_CHECK(options.vocab_size > 0, "tokenizer training on ", input_path, ": vocab size must be positive, not ",
              options.vocab_size);
  QTUNE_CHECK(options.num_threads > 0, "tokenizer training on ", input_path, ": num_threads must be positive");
  const fs::path out_dir = fs::absolute(out_model).parent_path();
  QTUNE_CHECK(fs::is_directory(out_dir), "tokenizer output directory ", out_dir.string(), " (for ", out_model,
              ") does not exist");

  // Llama's tokenizer settings: no Unicode normalization, a dummy prefix space, whitespace kept as it is,
  // digits split one by one, whitespace-only pieces allowed. Every sentence is used in file order
  // (input_sentence_size 0, no shuffling), so the result depends only on the input and the options.
  const std::unordered_map<std::string, std::string> args = {
      {"input", input_path},
      {"model_type", options.model_type},
      {"vocab_size", std::to_string(options.vocab_size)},
      {"byte_fallback", bool_flag(options.byte_fallback)},
      {"character_coverage", std::to_string(options.character_coverage)},
      {"max_sentence_length", std::to_string(options.max_sentence_length)},
      {"num_threads", std::to_string(options.num_threads)},
      {"unk_id", "0"},
      {"bos_id", "1"},
      {"eos_id", "2"},
      {"pad_id", "-1"},
      {"normalization_rule_name", "identity"},
      {"add_dummy_prefix", "true"},
      {"remove_extra_whitespaces", "false"},
      {"split_digits", "true"},
      {"allow_whitespace_only_pieces", "true"},
      {"input_sentence_size", "0"},
      {"shuffle_input_sentence", "false"},
      // The trainer logs every step to stderr; errors still come back as its Status.
      {"minloglevel", "2"},
  };
  sentencepiece::SetRandomGeneratorSeed(static_cast<unsigned int>(options.seed));
  std::string model;
  // No model_prefix: the trainer hands the model back in memory instead of writing files.
  const auto status = sentencepiece::SentencePieceTrainer::Train(args, nullptr, &model);
  if (!status.ok()) QTUNE_FAIL("tokenizer training on ", input_path, " failed: ", status.message());
  QTUNE_CHECK(!model.empty(), "tokenizer training on ", input_path, " produced no model");

  io::write_file_atomic(out_model, model);
}

}  // namespace qtune::data
