#pragma once
// Plain-text corpora -> one token stream for pretraining: each document is BOS + text + EOS (when the
// tokenizer has those ids). Large files are read and tokenized in pieces (at paragraph boundaries), so
// memory stays near the size of the token stream.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "models/tokenizer.h"

namespace qtune::models {

struct TextCorpusOptions {
  // A line exactly equal to this separates documents (e.g. "%" for fortune files); empty: the whole file
  // is one document.
  std::string document_separator;
};

// Called now and then with (bytes read, bytes total).
using TokenizeProgress = std::function<void(int64_t done, int64_t total)>;

// An Error naming the file when it is missing, unreadable or not UTF-8 (with the line number).
std::vector<int32_t> tokenize_text_file(const std::string& path, const Tokenizer& tokenizer,
                                        const TextCorpusOptions& options = {}, const TokenizeProgress& progress = {});

}  // namespace qtune::models
