// Picking a model directory's tokenizer, and incremental decoding for generation.
#include "data/tokenizer.h"

#include <filesystem>

#include "data/gguf_vocabulary.h"
#include "data/tokenizer_utf8.h"
#include "engine/check.h"

namespace qtune::data {

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  namespace fs = std::filesystem;
  QTUNE_CHECK(fs::exists(path), "tokenizer ", path, " not found");
  if (io::is_gguf_file(path)) return load_gguf_tokenizer(io::GgufFile::open(path));
  if (!fs::is_directory(path)) {
    return fs::path(path).extension() == ".json" ? load_bpe_json(path) : load_sentencepiece(path);
  }
  const std::string& dir = path;
  const fs::path json_path = fs::path(dir) / "tokenizer.json", model_path = fs::path(dir) / "tokenizer.model";
  const bool have_json = fs::is_regular_file(json_path), have_model = fs::is_regular_file(model_path);
  if (have_json) {
    try {
      return load_bpe_json(json_path.string());
    } catch (const Error&) {
      // Llama 1/2 checkpoints ship a tokenizer.json converted from their tokenizer.model (a
      // SentencePiece-style BPE this reader rejects); the .model file is the original, so use it.
      if (!have_model) throw;
    }
  }
  if (have_model) return load_sentencepiece(model_path.string());
  QTUNE_FAIL("no tokenizer in ", dir,
             ": looked for tokenizer.json (byte-level BPE) and tokenizer.model (SentencePiece)");
}

namespace {

// Length of `text` without the characters that may still change when more ids arrive: trailing U+FFFD
// (what the decoders print for the first bytes of an unfinished character) and any incomplete sequence.
size_t stable_length(std::string_view text) {
  size_t end = text.size();
  for (;;) {
    if (end >= utf8::kReplacement.size() && text.substr(0, end).ends_with(utf8::kReplacement)) {
      end -= utf8::kReplacement.size();
      continue;
    }
    // A lead byte in the last three bytes whose sequence is cut off by the end.
    bool cut = false;
    for (size_t back = 1; back <= 3 && back <= end; ++back) {
      const utf8::Step step = utf8::scan(text.substr(0, end), end - back);
      if (step.truncated) {
        end -= back;
        cut = true;
        break;
      }
    }
    if (!cut) return end;
  }
}

}  // namespace

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, std::vector<int32_t> prompt_ids)
    : tokenizer_(tokenizer), ids_(std::move(prompt_ids)) {
  window_begin_ = window_start();
  // An unfinished character at the end of the prompt is completed, and so shown, by generated ids.
  shown_ = stable_length(window_text());
}

std::string StreamDecoder::push(int32_t id) {
  ids_.push_back(id);
  // Decoding is prefix-stable for both tokenizer kinds as long as the window's first id stays put,
  // except for trailing U+FFFD that stand for the first bytes of an unfinished character.
  const std::string text = window_text();
  const size_t end = stable_length(text);
  if (end <= shown_) return {};
  std::string piece = text.substr(shown_, end - shown_);
  shown_ = end;
  if (end == text.size()) {
    // All of the window is final: restart it a few ids back so that it stays short. The new window's
    // text counts as shown (SentencePiece may drop its first piece's space; it was shown before).
    window_begin_ = window_start();
    shown_ = window_text().size();
  }
  return piece;
}

std::string StreamDecoder::finish() {
  const std::string text = window_text();
  std::string piece = shown_ < text.size() ? text.substr(shown_) : std::string();
  shown_ = text.size();
  return piece;
}

size_t StreamDecoder::window_start() const {
  size_t begin = ids_.size() > kContext ? ids_.size() - kContext : 0;
  // A window that starts inside a character (at a byte piece after its first) begins with U+FFFD, which
  // the constructor could not tell from an unfinished character at the end; a character has at most
  // three bytes after its first, so a few steps back reach its start.
  for (int extra = 0; extra < 3 && begin > 0; ++extra) {
    const std::string text =
        tokenizer_.decode(std::vector<int32_t>(ids_.begin() + static_cast<ptrdiff_t>(begin), ids_.end()));
    if (!text.starts_with(utf8::kReplacement)) break;
    --begin;
  }
  return begin;
}

std::string StreamDecoder::window_text() const {
  return tokenizer_.decode(std::vector<int32_t>(ids_.begin() + static_cast<ptrdiff_t>(window_begin_), ids_.end()));
}

}  // namespace qtune::data
