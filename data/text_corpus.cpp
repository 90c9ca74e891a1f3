#include "data/text_corpus.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string_view>

#include "data/tokenizer_utf8.h"
#include "engine/check.h"

namespace qtune::data {
namespace {

bool is_blank(std::string_view line) { return line.empty() || line == "\r"; }

bool has_text(std::string_view line) { return line.find_first_not_of(" \t\r\n\f\v") != std::string_view::npos; }

// One document's lines, encoded piece by piece into `out` (see TextCorpusOptions::piece_bytes).
class DocumentEncoder {
 public:
  DocumentEncoder(const Tokenizer& tokenizer, int64_t piece_bytes, std::vector<int32_t>& out)
      : tokenizer_(tokenizer), piece_bytes_(static_cast<size_t>(piece_bytes)), out_(out) {}

  // `line` without its "\n".
  void add_line(std::string_view line) {
    const bool blank = is_blank(line);
    if (!blank && after_blank_ && has_text_ && pending_.size() >= piece_bytes_) encode_pending(false);
    pending_.append(line);
    pending_.push_back('\n');
    has_text_ = has_text_ || has_text(line);
    after_blank_ = blank;
  }

  // Ends the document; returns whether it had text (a whitespace-only document yields no tokens).
  bool finish() {
    const bool encoded = has_text_;
    if (encoded) {
      pending_.pop_back();  // lines are joined by "\n": the last one's is not part of the text
      encode_pending(true);
    }
    pending_.clear();
    has_text_ = started_ = after_blank_ = false;
    return encoded;
  }

 private:
  void encode_pending(bool last) {
    const std::vector<int32_t> ids = tokenizer_.encode(pending_, /*add_bos=*/!started_, /*add_eos=*/last);
    out_.insert(out_.end(), ids.begin(), ids.end());
    started_ = true;
    pending_.clear();
  }

  const Tokenizer& tokenizer_;
  const size_t piece_bytes_;
  std::vector<int32_t>& out_;
  std::string pending_;  // text of the document not yet encoded
  bool has_text_ = false, started_ = false, after_blank_ = false;
};

}  // namespace

std::vector<int32_t> tokenize_text_file(const std::string& path, const Tokenizer& tokenizer,
                                        const TextCorpusOptions& options, const TokenizeProgress& progress,
                                        TextCorpusStats* stats) {
  namespace fs = std::filesystem;
  QTUNE_CHECK(options.piece_bytes > 0, "tokenize_text_file: piece_bytes must be positive, got ", options.piece_bytes);
  std::error_code ec;
  QTUNE_CHECK(fs::exists(path, ec), path, ": no such file");
  QTUNE_CHECK(fs::is_regular_file(path, ec), path, ": not a regular file");
  const auto total = static_cast<int64_t>(fs::file_size(path, ec));
  QTUNE_CHECK(!ec, path, ": cannot read its size (", ec.message(), ")");
  const std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  QTUNE_CHECK(file != nullptr, path, ": cannot open (", std::strerror(errno), ")");

  std::vector<int32_t> tokens;
  DocumentEncoder document(tokenizer, options.piece_bytes, tokens);
  int64_t documents = 0, line_number = 0, done = 0;
  const auto take_line = [&](std::string_view line) {
    ++line_number;
    const size_t bad = utf8::first_invalid(line);
    QTUNE_CHECK(bad == std::string_view::npos, path, ":", line_number, ": invalid UTF-8 at byte ", bad + 1,
                " of the line (convert the file to UTF-8, e.g. with iconv)");
    const std::string_view bare = line.ends_with('\r') ? line.substr(0, line.size() - 1) : line;
    if (!options.document_separator.empty() && bare == options.document_separator) {
      documents += document.finish() ? 1 : 0;
    } else {
      document.add_line(line);
    }
  };

  constexpr size_t kBlockBytes = size_t{1} << 20;
  std::string buffer;  // the unfinished line of the previous block, then the new block
  std::vector<char> block(kBlockBytes);
  for (;;) {
    const size_t n = std::fread(block.data(), 1, block.size(), file.get());
    QTUNE_CHECK(!std::ferror(file.get()), path, ": read error (", std::strerror(errno), ")");
    if (n == 0) break;
    done += static_cast<int64_t>(n);
    buffer.append(block.data(), n);
    size_t begin = 0;
    for (size_t end; (end = buffer.find('\n', begin)) != std::string::npos; begin = end + 1) {
      take_line(std::string_view(buffer).substr(begin, end - begin));
    }
    buffer.erase(0, begin);
    if (progress) progress(done, total);
  }
  if (!buffer.empty()) take_line(buffer);  // a last line without "\n"
  documents += document.finish() ? 1 : 0;
  if (stats != nullptr) *stats = {.documents = documents, .bytes = done};
  return tokens;
}

}  // namespace qtune::data
