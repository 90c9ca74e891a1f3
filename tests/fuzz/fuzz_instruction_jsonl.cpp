// libFuzzer target for instruction JSONL (data::load_instruction_jsonl), with both prompt templates, strict
// and skipping bad lines: examples whose tokens and labels agree, or qtune::Error.
#include <cstdlib>

#include "data/instruction_data.h"
#include "engine/check.h"
#include "fuzz_files.h"

namespace {

// Bytes as ids (256 + bos 256 + eos 257): enough to exercise the reader without a tokenizer file.
class ByteTokenizer final : public qtune::data::Tokenizer {
 public:
  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool add_eos) const override {
    std::vector<int32_t> ids;
    if (add_bos) ids.push_back(256);
    for (unsigned char c : text) ids.push_back(c);
    if (add_eos) ids.push_back(257);
    return ids;
  }
  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string out;
    for (int32_t id : ids)
      if (id < 256) out += static_cast<char>(id);
    return out;
  }
  int64_t vocab_size() const override { return 258; }
  std::optional<int32_t> bos_id() const override { return 256; }
  std::optional<int32_t> eos_id() const override { return 257; }
  std::string id_to_piece(int32_t id) const override { return std::to_string(id); }
  std::string kind() const override { return "bytes"; }
  qtune::data::VocabularyTable vocabulary() const override {
    qtune::data::VocabularyTable table;
    for (int32_t id = 0; id < vocab_size(); ++id) {
      table.pieces.push_back(id_to_piece(id));
      table.types.push_back(id < 256 ? qtune::data::TokenType::byte : qtune::data::TokenType::control);
    }
    table.bos = bos_id();
    table.eos = eos_id();
    return table;
  }
  void save(const std::string&) const override { QTUNE_FAIL("the fuzzer's byte tokenizer has no file"); }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0];  // the first byte picks the options
  const std::string path = qtune::fuzz::write_input(data + 1, size - 1, "train.jsonl");
  qtune::data::InstructionOptions options;
  options.prompt_template = (mode & 1) ? "chat" : "alpaca";
  options.train_on_input = (mode & 2) != 0;
  options.skip_bad_lines = (mode & 4) != 0;
  options.max_seq_len = (mode & 8) ? 16 : 0;
  try {
    const auto out = qtune::data::load_instruction_jsonl(path, ByteTokenizer(), options);
    for (const auto& e : out.examples) {
      if (e.tokens.size() != e.labels.size()) std::abort();
      if (options.max_seq_len > 0 && static_cast<int64_t>(e.tokens.size()) > options.max_seq_len) std::abort();
    }
  } catch (const qtune::Error&) {
  }
  return 0;
}
