#pragma once
// Evaluation of a causal LM: perplexity metrics (docs/numerics.md §5, lm-evaluation-harness `wikitext`
// definitions) and multiple-choice accuracy (hellaswag format).
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "data/tokenizer.h"
#include "models/llama.h"

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

// Called after each forward with (sequences scored, sequences total): perplexity windows, or one
// sequence per ending for multiple choice.
using EvalProgress = std::function<void(int64_t done, int64_t total)>;

// Each document is tokenized with BOS and scored in disjoint windows of at most max_length tokens
// (max_length <= 0: the model's max_position_embeddings); every token after BOS is predicted exactly
// once. The windows are lm-evaluation-harness's loglikelihood_rolling (context_len = 1): the first
// is BOS + the first max_length - 1 tokens; each later one scores the next max_length tokens from the
// token before them, and the last, partial one is filled up to max_length with earlier tokens that are
// context only. Documents are scored independently (no window spans two).
// Words are counted as the harness does, len(re.split(r"\s+", text)) with Python's Unicode whitespace:
// one more than the number of whitespace runs, so leading or trailing whitespace adds an empty word.
// Bytes are the text's UTF-8 length.
// batch_size windows share a forward (padded on the right, padding ignored); <= 0 picks as many as keep
// the logits near 256 MiB, at most 16.
// Runs without autograd; the model's train/eval mode is restored afterwards.
PerplexityResult evaluate_perplexity(Llama& model, const data::Tokenizer& tokenizer,
                                     const std::vector<std::string>& documents, int64_t max_length = 0,
                                     const EvalProgress& progress = {}, int64_t batch_size = 0);

// llama.cpp's llama-perplexity protocol, so that its figure and qtune's compare on the same model and text: the
// text tokenized whole with bos; cut into chunks of n_ctx tokens (a last partial chunk is dropped); each chunk's
// first token replaced by bos as its input; in each chunk, tokens n_ctx/2 + 1 .. n_ctx - 1 scored, each given
// every token of the chunk before it. The text must hold at least 2 * n_ctx tokens (an Error otherwise, as
// llama-perplexity refuses it). perplexity = exp(-log_likelihood / scored).
struct ChunkedPerplexity {
  int64_t chunks = 0, scored = 0;
  double log_likelihood = 0;
  double perplexity() const;
};
ChunkedPerplexity evaluate_llama_cpp_perplexity(Llama& model, const data::Tokenizer& tokenizer, const std::string& text,
                                                int64_t n_ctx, const EvalProgress& progress = {},
                                                int64_t batch_size = 0);

// The mean of model.loss over every [batch, seq_len] window a DataLoader cuts from `tokens` (seed 0;
// the order does not change the mean): the held-out loss of a token stream, as a training loop reports
// it. Runs without autograd; the model's train/eval mode is restored afterwards. A stream shorter than
// one batch is the DataLoader's error.
double mean_stream_loss(Llama& model, const std::vector<int32_t>& tokens, int64_t seq_len, int64_t batch);

struct MultipleChoiceResult {
  int64_t examples = 0;
  double acc = 0, acc_norm = 0;
  std::vector<std::vector<double>> log_likelihoods;  // [example][ending]: summed LL of the ending's tokens
};

// hellaswag-format JSONL: `ctx` (string), `endings` (list of strings), `label` (index, int or string).
// Each ending is scored as the summed log-likelihood of its tokens given BOS + ctx (the harness's
// HFLM prepends BOS here only with add_bos_token=True; Llama models are trained with BOS at the start
// of text, so it is always there), tokenized as the harness's _encode_pair does: trailing whitespace
// of ctx moves to the continuation " " + ending, and the continuation's tokens are
// encode(ctx + continuation) minus the first len(encode(ctx)) tokens (so a SentencePiece merge across
// the boundary stays in the continuation). A sequence longer than the model's max_position_embeddings
// loses context tokens on the left. acc takes the argmax of the sum, acc_norm of the sum divided by the
// ending's UTF-8 byte length (ties: the first ending). limit > 0 scores only the first `limit`
// examples; batch_size as for evaluate_perplexity (sequences per forward).
MultipleChoiceResult evaluate_multiple_choice(Llama& model, const data::Tokenizer& tokenizer,
                                              const std::string& jsonl_path, int64_t limit = 0,
                                              const EvalProgress& progress = {}, int64_t batch_size = 0);

}  // namespace qtune::models
