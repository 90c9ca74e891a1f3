// `qtune tokenizer train|encode|decode`: train a SentencePiece model on a text file, and turn text into
// ids and back with any tokenizer qtune reads (a model directory, a tokenizer.json or a .model file).
#include <cstdint>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/core.h>

#include "data/tokenizer.h"
#include "engine/check.h"
#include "qtune/commands.h"

namespace qtune::cli {
namespace {

// "1 2 3" (spaces or commas between) -> ids.
std::vector<int32_t> parse_ids(const std::string& text) {
  std::string spaced = text;
  for (char& c : spaced) {
    if (c == ',') c = ' ';
  }
  std::istringstream in(spaced);
  std::vector<int32_t> ids;
  std::string word;
  while (in >> word) {
    size_t used = 0;
    long long value = -1;
    try {
      value = std::stoll(word, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    QTUNE_CHECK(used == word.size() && value >= 0 && value <= INT32_MAX, "--ids: '", word, "' is not a token id");
    ids.push_back(static_cast<int32_t>(value));
  }
  return ids;
}

void add_train(CLI::App& group, int& status) {
  struct Flags {
    std::string input, out;
    data::SentencePieceTrainOptions options;
  };
  auto flags = std::make_shared<Flags>();
  auto* cmd = group.add_subcommand("train", "Train a SentencePiece tokenizer (ids 0 unk, 1 bos, 2 eos) on a text file");
  cmd->add_option("--input", flags->input, "UTF-8 training text, one sentence per line")->required();
  cmd->add_option("--vocab-size", flags->options.vocab_size, "number of pieces")
      ->required()
      ->check(integer_in(1, kMaxCount));
  cmd->add_option("--out", flags->out, "the .model file to write")->required();
  cmd->add_option("--model-type", flags->options.model_type, "SentencePiece algorithm")
      ->check(CLI::IsMember({"bpe", "unigram"}))
      ->capture_default_str();
  cmd->add_option("--character-coverage", flags->options.character_coverage,
                  "share of characters kept as pieces; the rest fall back to bytes")
      ->check(CLI::Range(0.9, 1.0))
      ->capture_default_str();
  cmd->add_option("--threads", flags->options.num_threads, "training threads")
      ->check(integer_in(1, kMaxCount))
      ->capture_default_str();
  cmd->callback([flags, &status] {
    data::train_sentencepiece(flags->input, flags->out, flags->options);
    const auto tokenizer = data::load_sentencepiece(flags->out);
    fmt::print("wrote {} ({} pieces, {})\n", flags->out, tokenizer->vocab_size(), flags->options.model_type);
    status = 0;
  });
}

void add_encode(CLI::App& group, int& status) {
  struct Flags {
    std::string tokenizer, text;
    bool bos = false, eos = false;
  };
  auto flags = std::make_shared<Flags>();
  auto* cmd = group.add_subcommand("encode", "Print the token ids of a text");
  cmd->add_option("--tokenizer", flags->tokenizer, "model directory, tokenizer.json or .model file")->required();
  cmd->add_option("--text", flags->text, "the text to encode")->required();
  cmd->add_flag("--bos", flags->bos, "prepend the bos id");
  cmd->add_flag("--eos", flags->eos, "append the eos id");
  cmd->callback([flags, &status] {
    const auto tokenizer = data::load_tokenizer(flags->tokenizer);
    std::string line;
    for (const int32_t id : tokenizer->encode(flags->text, flags->bos, flags->eos)) {
      line += (line.empty() ? "" : " ") + std::to_string(id);
    }
    fmt::print("{}\n", line);
    status = 0;
  });
}

void add_decode(CLI::App& group, int& status) {
  struct Flags {
    std::string tokenizer, ids;
  };
  auto flags = std::make_shared<Flags>();
  auto* cmd = group.add_subcommand("decode", "Print the text of token ids");
  cmd->add_option("--tokenizer", flags->tokenizer, "model directory, tokenizer.json or .model file")->required();
  cmd->add_option("--ids", flags->ids, "ids separated by spaces or commas, e.g. \"1 15043 3186\"")->required();
  cmd->callback([flags, &status] {
    const auto tokenizer = data::load_tokenizer(flags->tokenizer);
    fmt::print("{}\n", tokenizer->decode(parse_ids(flags->ids)));
    status = 0;
  });
}

}  // namespace

void add_tokenizer_command(CLI::App& app, int& status) {
  CLI::App* group = add_command_group(app, "tokenizer", "Train tokenizers; encode and decode text", status);
  add_train(*group, status);
  add_encode(*group, status);
  add_decode(*group, status);
}

}  // namespace qtune::cli
