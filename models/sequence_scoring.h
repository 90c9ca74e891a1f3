#pragma once
// Batched log-likelihood scoring of token sequences: the forward passes behind models/evaluate.h.
#include <cstdint>
#include <functional>
#include <vector>

#include "models/llama.h"

namespace qtune::models {

// A sequence whose last `scored` tokens are scored, each given every token before it: the model reads
// tokens[:-1] and tokens[1:] are the targets, of which only the last `scored` count.
struct ScoredSequence {
  std::vector<int32_t> tokens;
  int64_t scored = 0;  // in [1, tokens.size() - 1]
};

// (sequences scored, sequences total)
using ScoringProgress = std::function<void(int64_t done, int64_t total)>;

// Rows per forward when the caller asks for "auto" (batch_size <= 0): as many sequences of `width`
// inputs as keep the [rows, width, vocab] logits near 256 MiB of f32, at least 1 and at most 16.
int64_t auto_batch_rows(int64_t width, int64_t vocab);

// The summed natural-log likelihood of each sequence's scored tokens. Consecutive sequences share a
// forward of up to batch_size rows (<= 0: auto_batch_rows), padded on the right to the longest: the
// model is causal, so what follows a sequence cannot change its scores, and padded or context-only
// positions get ignored targets. Runs in eval mode without autograd (the mode is restored). After each
// forward, `progress` is told how many sequences are scored.
std::vector<double> score_sequences(Llama& model, const std::vector<ScoredSequence>& sequences, int64_t batch_size,
                                    const ScoringProgress& progress = {});

}  // namespace qtune::models
