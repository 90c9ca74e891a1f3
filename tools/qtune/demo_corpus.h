#pragma once
// The demo's corpus: the `fortunes` package's plain-text files, split into fortunes, shuffled by seed
// and divided into a training part and a held-out part.
#include <cstdint>
#include <string>
#include <vector>

namespace qtune::cli {

struct DemoCorpus {
  std::vector<std::string> train, heldout;  // fortunes (documents)
  int64_t files = 0;
  int64_t skipped = 0;  // fortunes dropped because they are not valid UTF-8
};

// Reads every fortune file under `dir` (the strfile .dat indexes and .u8 links are skipped), splits at
// "%" lines, and holds out `heldout_fraction` of the fortunes in an order drawn from `seed`.
DemoCorpus read_demo_corpus(const std::string& dir, double heldout_fraction, uint64_t seed);

// Writes documents separated by "%" lines (what data::tokenize_text_file splits on with separator "%").
void write_documents(const std::string& path, const std::vector<std::string>& documents);

}  // namespace qtune::cli
