// The real Llama 2 tokenizer (32,000 pieces, byte fallback) against Python sentencepiece's ids for the
// golden samples. The model file is development data outside the repository: the project's shared data
// folder beside the checkout, or $QTUNE_SHARED_DATA. Without it this test reports SKIPPED (exit 77).
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "data/tokenizer.h"
#include "tests/tokenizer_goldens.h"

using namespace qtune::data;
using namespace qtune::testing;

namespace {

// The shared data folder sits next to the main checkout (<src>/../shared/data); worktrees are one
// level deeper. QTUNE_GOLDEN_DIR is <src>/tests/golden.
std::string find_llama2_model() {
  namespace fs = std::filesystem;
  std::vector<fs::path> candidates;
  if (const char* env = std::getenv("QTUNE_SHARED_DATA")) candidates.emplace_back(env);
  const fs::path src = fs::path(QTUNE_GOLDEN_DIR) / ".." / "..";
  candidates.push_back(src / ".." / "shared" / "data");
  candidates.push_back(src / ".." / ".." / "shared" / "data");
  for (const fs::path& dir : candidates) {
    if (fs::is_regular_file(dir / "llama2-tokenizer.model")) return (dir / "llama2-tokenizer.model").string();
  }
  return "";
}

}  // namespace

TEST_CASE("Llama 2 tokenizer matches Python sentencepiece") {
  const std::string path = find_llama2_model();
  if (path.empty()) {
    std::printf("SKIPPED: llama2-tokenizer.model not found (set QTUNE_SHARED_DATA to its folder)\n");
    std::fflush(stdout);
    std::_Exit(77);
  }
  MESSAGE("using ", path);
  const nlohmann::json goldens = read_json(kTokenizerGoldenDir + "llama2_goldens.json");
  const auto tok = load_sentencepiece(path);
  CHECK(tok->vocab_size() == 32000);
  check_tokenizer_goldens(*tok, goldens.at("llama2-tokenizer.model"), goldens.at("samples"));
  check_stream_decoder(*tok, goldens.at("samples"));
}
