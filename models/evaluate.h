#pragma once
// Evaluation of a causal LM: perplexity metrics (NUMERICS.md §5, lm-evaluation-harness `wikitext`
// definitions) and multiple-choice accuracy (hellaswag format).
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "models/llama.h"
#include "models/tokenizer.h"

namespace qtune::models {

struct PerplexityResult {
  double log_likelihood = 0;  // summed natural-log likelihood of every scored token
  int64_t tokens = 0, words = 0, bytes = 0, documents = 0;
  double token_loss() const;        // -LL / tokens
  double token_perplexity() const;  // exp(token_loss)
  double word_perplexity() const;   // exp(-LL / words)
  double byte_perplexity() const;   // exp(-LL / bytes)
  double bits_per_byte() const;     // -LL / bytes / ln 2
};

// Called after each scored window with (documents done, documents total).
using EvalProgress = std::function<void(int64_t done, int64_t total)>;

// Each document is tokenized with BOS and scored in disjoint windows of at most max_length tokens
// (max_length <= 0: the model's max_position_embeddings); every token after BOS is predicted exactly
// once. Words are the whitespace-split pieces of the original text, bytes its UTF-8 length.
// Runs without autograd; the model's train/eval mode is restored afterwards.
PerplexityResult evaluate_perplexity(Llama& model, const Tokenizer& tokenizer, const std::vector<std::string>& documents,
                                     int64_t max_length = 0, const EvalProgress& progress = {});

// Documents of an eval file: a `.jsonl` file holds one JSON object per line with a string `text`; any
// other file is plain UTF-8 text, one document (an Error naming file and line for malformed JSONL).
std::vector<std::string> load_eval_documents(const std::string& path);

struct MultipleChoiceResult {
  int64_t examples = 0;
  double acc = 0, acc_norm = 0;
};

// hellaswag-format JSONL: `ctx` (string), `endings` (list of strings), `label` (index, int or string).
// Each ending is scored as the summed log-likelihood of its tokens given BOS + ctx (the ending is
// tokenized as " " + ending appended to the context, lm-evaluation-harness style); acc takes the argmax
// of the sum, acc_norm of the sum divided by the ending's UTF-8 byte length. limit > 0 scores only the
// first `limit` examples.
MultipleChoiceResult evaluate_multiple_choice(Llama& model, const Tokenizer& tokenizer, const std::string& jsonl_path,
                                              int64_t limit = 0, const EvalProgress& progress = {});

}  // namespace qtune::models
