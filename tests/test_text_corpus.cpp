// Text corpora -> token streams on the tiny SentencePiece model of tests/golden/tiny_llama_sp: documents
// at separator lines with BOS/EOS, pieces cut at paragraph starts (docs/data.md), invalid UTF-8 named by
// line, progress reports.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "data/text_corpus.h"
#include "data/tokenizer.h"
#include "tests/scratch_files.h"

using namespace qtune::data;
using namespace qtune::testing;

namespace {

const Tokenizer& tiny() {
  static const auto tok = load_sentencepiece(std::string(QTUNE_GOLDEN_DIR) + "/tiny_llama_sp/tokenizer.model");
  return *tok;
}

std::vector<int32_t> concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Lines without a blank one between them.
std::string lines(int n) {
  std::string text;
  for (int i = 0; i < n; ++i) text += "Line " + std::to_string(i) + " of the corpus, with some words.\n";
  return text;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("a file is one document: exactly encode(text, bos, eos), its final newline not part of it") {
  ScratchDir dir("text_corpus_one");
  const std::string text = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.";
  write_bytes(dir.file("a.txt"), text + "\n");
  TextCorpusStats stats;
  const auto tokens = tokenize_text_file(dir.file("a.txt"), tiny(), {}, {}, &stats);
  CHECK(tokens == tiny().encode(text, true, true));
  CHECK(tokens.front() == 1);
  CHECK(tokens.back() == 2);
  CHECK(stats.documents == 1);
  CHECK(stats.bytes == static_cast<int64_t>(text.size() + 1));
  // Without the final newline: the same.
  write_bytes(dir.file("b.txt"), text);
  CHECK(tokenize_text_file(dir.file("b.txt"), tiny()) == tokens);
}

TEST_CASE("separator lines split documents; whitespace-only documents are dropped; CRLF separators count") {
  ScratchDir dir("text_corpus_sep");
  write_bytes(dir.file("f.txt"), "%\nA fortune\non two lines.\n%\r\n  \n%\nAnother one.\n%\n");
  TextCorpusStats stats;
  const auto tokens = tokenize_text_file(dir.file("f.txt"), tiny(), {.document_separator = "%"}, {}, &stats);
  CHECK(stats.documents == 2);
  CHECK(tokens ==
        concat(tiny().encode("A fortune\non two lines.", true, true), tiny().encode("Another one.", true, true)));
  // Without a separator the "%" lines are text.
  CHECK(tokenize_text_file(dir.file("f.txt"), tiny()) ==
        tiny().encode("%\nA fortune\non two lines.\n%\r\n  \n%\nAnother one.\n%", true, true));
}

TEST_CASE("without blank lines a document is encoded whole, whatever piece_bytes") {
  ScratchDir dir("text_corpus_pieces");
  const std::string text = lines(200);
  write_bytes(dir.file("l.txt"), text);
  const auto whole = tiny().encode(text.substr(0, text.size() - 1), true, true);
  for (const int64_t piece : {int64_t{1}, int64_t{100}, int64_t{1} << 20}) {
    CAPTURE(piece);
    CHECK(tokenize_text_file(dir.file("l.txt"), tiny(), {.document_separator = "", .piece_bytes = piece}) == whole);
  }
}

TEST_CASE("a long document is cut at the first paragraph start after piece_bytes") {
  ScratchDir dir("text_corpus_cut");
  write_bytes(dir.file("p.txt"), "aaa\n\nbbb\nccc\n\n\nddd eee\nfff\n");
  // piece_bytes 1: every paragraph start cuts; BOS on the first piece, EOS on the last.
  const auto cut = tokenize_text_file(dir.file("p.txt"), tiny(), {.document_separator = "", .piece_bytes = 1});
  const auto expected = concat(concat(tiny().encode("aaa\n\n", true, false), tiny().encode("bbb\nccc\n\n\n")),
                               tiny().encode("ddd eee\nfff", false, true));
  CHECK(cut == expected);
  // 9 bytes: "aaa\n\nbbb\n" is only 9 bytes when "ccc" comes, which is no paragraph start; the cut waits.
  CHECK(tokenize_text_file(dir.file("p.txt"), tiny(), {.document_separator = "", .piece_bytes = 9}) ==
        concat(tiny().encode("aaa\n\nbbb\nccc\n\n\n", true, false), tiny().encode("ddd eee\nfff", false, true)));
  // Large pieces: one encode of the whole document.
  CHECK(tokenize_text_file(dir.file("p.txt"), tiny()) ==
        tiny().encode("aaa\n\nbbb\nccc\n\n\nddd eee\nfff", true, true));
  CHECK(cut == tokenize_text_file(dir.file("p.txt"), tiny(), {.document_separator = "", .piece_bytes = 1}));
}

TEST_CASE("invalid UTF-8 is an Error naming the file and line") {
  ScratchDir dir("text_corpus_utf8");
  write_bytes(dir.file("bad.txt"), "fine\nalso fine\nbad \xC3\x28 here\n");
  CHECK(contains(error_of([&] { tokenize_text_file(dir.file("bad.txt"), tiny()); }),
                 "bad.txt:3: invalid UTF-8 at byte 5 of the line"));
}

TEST_CASE("a missing file or a directory is an Error naming it; an empty file has no tokens") {
  ScratchDir dir("text_corpus_missing");
  CHECK(contains(error_of([&] { tokenize_text_file(dir.file("none.txt"), tiny()); }), "none.txt: no such file"));
  CHECK(contains(error_of([&] { tokenize_text_file(dir.path.string(), tiny()); }), "not a regular file"));
  write_bytes(dir.file("empty.txt"), "");
  TextCorpusStats stats{.documents = 5};
  CHECK(tokenize_text_file(dir.file("empty.txt"), tiny(), {}, {}, &stats).empty());
  CHECK(stats.documents == 0);
}

TEST_CASE("progress reports grow to the file size") {
  ScratchDir dir("text_corpus_progress");
  std::string text;
  while (text.size() < 1'200'000) text += lines(50) + "\n";
  write_bytes(dir.file("big.txt"), text);
  std::vector<std::pair<int64_t, int64_t>> reports;
  const auto tokens =
      tokenize_text_file(dir.file("big.txt"), tiny(), {.document_separator = "", .piece_bytes = 1 << 18},
                         [&](int64_t done, int64_t total) { reports.emplace_back(done, total); });
  REQUIRE(reports.size() >= 2);  // read in blocks of 1 MiB
  for (size_t i = 1; i < reports.size(); ++i) CHECK(reports[i].first > reports[i - 1].first);
  CHECK(reports.back().first == static_cast<int64_t>(text.size()));
  CHECK(reports.back().second == static_cast<int64_t>(text.size()));
  CHECK(tokens.front() == 1);
  CHECK(tokens.back() == 2);
  // Every piece after the first starts with SentencePiece's dummy-prefix space; the text is otherwise intact.
  const auto without_spaces = [](std::string t) {
    std::erase(t, ' ');
    return t;
  };
  CHECK(without_spaces(tiny().decode(tokens)) == without_spaces(text.substr(0, text.size() - 1)));
}
