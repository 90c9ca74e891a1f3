#pragma once
// Plain-text corpora -> one token stream for pretraining: each document is BOS + text + EOS (when the
// tokenizer has those ids). Large documents are read and tokenized in pieces (at paragraph boundaries), so
// memory stays near the size of the token stream. docs/data.md has the exact rules.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/tokenizer.h"

namespace qtune::data {

struct TextCorpusOptions {
  // A line exactly equal to this (a trailing "\r" aside) separates documents (e.g. "%" for fortune files);
  // empty: the whole file is one document.
  std::string document_separator;
  // A document longer than this is encoded in pieces: a piece ends, once it holds at least piece_bytes,
  // at the next paragraph start (a non-blank line after a blank one). A document without blank lines is
  // always encoded whole, whatever its size; one shorter than piece_bytes is exactly
  // tokenizer.encode(text, bos, eos).
  int64_t piece_bytes = int64_t{1} << 20;
};

// What tokenize_text_file saw, for summaries.
struct TextCorpusStats {
  int64_t documents = 0;  // documents with non-whitespace text (the only ones encoded)
  int64_t bytes = 0;      // size of the file
};

// Called now and then with (bytes read, bytes total).
using TokenizeProgress = std::function<void(int64_t done, int64_t total)>;

// An Error naming the file when it is missing, unreadable or not UTF-8 (with the line number).
std::vector<int32_t> tokenize_text_file(const std::string& path, const Tokenizer& tokenizer,
                                        const TextCorpusOptions& options = {}, const TokenizeProgress& progress = {},
                                        TextCorpusStats* stats = nullptr);

}  // namespace qtune::data
