#include "qtune/demo_corpus.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "data/tokenizer_utf8.h"
#include "engine/check.h"
#include "engine/io/atomic_file.h"

namespace qtune::cli {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> split_fortunes(const std::string& text) {
  std::vector<std::string> fortunes;
  std::istringstream in(text);
  std::string line, current;
  auto flush = [&] {
    while (!current.empty() && (current.back() == '\n' || current.back() == ' ')) current.pop_back();
    if (!current.empty()) fortunes.push_back(current);
    current.clear();
  };
  while (std::getline(in, line)) {
    if (line == "%") {
      flush();
    } else {
      current += line;
      current += '\n';
    }
  }
  flush();
  return fortunes;
}

// splitmix64: a fixed, platform-independent order (std::shuffle's differs between standard libraries).
uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

DemoCorpus read_demo_corpus(const std::string& dir, double heldout_fraction, uint64_t seed) {
  QTUNE_CHECK(fs::is_directory(dir), "corpus directory ", dir,
              " not found; install the fortunes package (apt-get install fortunes) or pass --corpus DIR");
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const auto ext = entry.path().extension();
    if (entry.is_regular_file() && !entry.is_symlink() && ext != ".dat" && ext != ".u8") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());

  DemoCorpus corpus;
  std::vector<std::string> all;
  for (const auto& file : files) {
    std::ifstream in(file, std::ios::binary);
    QTUNE_CHECK(in, "cannot read ", file.string());
    std::stringstream text;
    text << in.rdbuf();
    for (auto& fortune : split_fortunes(text.str())) {
      if (data::utf8::first_invalid(fortune) != std::string::npos) {
        ++corpus.skipped;
        continue;
      }
      all.push_back(std::move(fortune));
    }
    ++corpus.files;
  }
  QTUNE_CHECK(all.size() >= 20, "only ", all.size(), " fortunes found under ", dir, "; the demo needs at least 20");

  uint64_t state = seed;
  for (size_t i = all.size() - 1; i > 0; --i) std::swap(all[i], all[splitmix64(state) % (i + 1)]);
  const auto heldout = std::max<size_t>(1, static_cast<size_t>(heldout_fraction * static_cast<double>(all.size())));
  corpus.heldout.assign(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(heldout));
  corpus.train.assign(all.begin() + static_cast<std::ptrdiff_t>(heldout), all.end());
  return corpus;
}

void write_documents(const std::string& path, const std::vector<std::string>& documents) {
  std::string text;
  for (const auto& doc : documents) {
    text += doc;
    text += "\n%\n";
  }
  io::write_file_atomic(path, text);
}

}  // namespace qtune::cli
