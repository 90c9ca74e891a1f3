// `qtune data prepare`: tokenize plain-text files into one token shard (data/token_shards.h) that
// pretraining memory-maps. Documents, pieces and BOS/EOS follow data/text_corpus.h (docs/data.md).
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <fmt/core.h>

#include "data/text_corpus.h"
#include "data/token_shards.h"
#include "data/tokenizer.h"
#include "engine/check.h"
#include "qtune/commands.h"

namespace qtune::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// Fails before any tokenizing when `out` cannot be written, so a long run does not end in that error.
void check_writable(const std::string& out) {
  const fs::path parent = fs::path(out).has_parent_path() ? fs::path(out).parent_path() : fs::path(".");
  QTUNE_CHECK(fs::is_directory(parent), "cannot write ", out, ": directory ", parent.string(), " does not exist");
  QTUNE_CHECK(::access(parent.c_str(), W_OK) == 0, "cannot write ", out, ": directory ", parent.string(),
              " is not writable");
  QTUNE_CHECK(!fs::is_directory(out), "cannot write ", out, ": it is a directory");
}

// Progress on stderr, at most once a second, so short inputs print nothing.
class ProgressLine {
 public:
  explicit ProgressLine(int64_t total) : total_(total) {}
  void update(const std::string& file, int64_t done) {
    if (seconds_since(last_) < 1.0) return;
    last_ = Clock::now();
    const double mb = 1e-6 * static_cast<double>(done);
    fmt::print(stderr, "\r{}: {:.1f} / {:.1f} MB ({:.1f} MB/s)   ", file, mb, 1e-6 * static_cast<double>(total_),
               mb / seconds_since(start_));
    printed_ = true;
  }
  ~ProgressLine() {
    if (printed_) fmt::print(stderr, "\n");
  }

 private:
  const int64_t total_;
  const Clock::time_point start_ = Clock::now();
  Clock::time_point last_ = Clock::now();
  bool printed_ = false;
};

void add_prepare(CLI::App& group, int& status) {
  struct Flags {
    std::string tokenizer, out, separator;
    std::vector<std::string> inputs;
  };
  auto flags = std::make_shared<Flags>();
  auto* cmd = group.add_subcommand("prepare", "Tokenize text files into one token shard for pretraining");
  cmd->add_option("--tokenizer", flags->tokenizer, "model directory, tokenizer.json or .model file")->required();
  cmd->add_option("--input", flags->inputs, "UTF-8 text file (repeat for several; their documents are concatenated)")
      ->required();
  cmd->add_option("--out", flags->out, "the token shard to write")->required();
  cmd->add_option("--separator", flags->separator,
                  "a line exactly equal to this separates documents (default: each file is one document)");
  cmd->callback([flags, &status] {
    const auto start = Clock::now();
    int64_t total_bytes = 0;
    for (const std::string& input : flags->inputs) {
      QTUNE_CHECK(fs::is_regular_file(input), "input ", input, " not found (or not a regular file)");
      total_bytes += static_cast<int64_t>(fs::file_size(input));
    }
    check_writable(flags->out);
    const auto tokenizer = data::load_tokenizer(flags->tokenizer);
    const auto tokenize_start = Clock::now();

    std::vector<int32_t> tokens;
    int64_t documents = 0, bytes_before = 0;
    {
      ProgressLine progress(total_bytes);
      for (const std::string& input : flags->inputs) {
        data::TextCorpusStats stats;
        const std::vector<int32_t> ids = data::tokenize_text_file(
            input, *tokenizer, {.document_separator = flags->separator},
            [&](int64_t done, int64_t) { progress.update(input, bytes_before + done); }, &stats);
        tokens.insert(tokens.end(), ids.begin(), ids.end());
        documents += stats.documents;
        bytes_before += stats.bytes;
      }
    }
    const double tokenize_seconds = seconds_since(tokenize_start);
    data::write_token_shard(flags->out, tokens, tokenizer->vocab_size());
    const double seconds = seconds_since(start);

    const auto n = static_cast<double>(tokens.size());
    fmt::print("wrote {} ({} tokens, vocabulary {})\n", flags->out, tokenizer->vocab_size() <= 65536 ? "u16" : "u32",
               tokenizer->vocab_size());
    fmt::print("  documents    {}\n  tokens       {}\n  text bytes   {}\n  tokens/byte  {:.3f}\n", documents,
               tokens.size(), bytes_before, bytes_before > 0 ? n / static_cast<double>(bytes_before) : 0.0);
    fmt::print("  file size    {} bytes\n  seconds      {:.2f} ({:.2f} MB/s of text tokenized)\n",
               fs::file_size(flags->out), seconds, 1e-6 * static_cast<double>(bytes_before) / tokenize_seconds);
    status = 0;
  });
}

}  // namespace

void add_data_command(CLI::App& app, int& status) {
  add_prepare(*add_command_group(app, "data", "Prepare training data", status), status);
}

}  // namespace qtune::cli
