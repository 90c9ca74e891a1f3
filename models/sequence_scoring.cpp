#include "models/sequence_scoring.h"

#include <algorithm>

#include "engine/autograd.h"
#include "engine/check.h"
#include "ops/cross_entropy.h"

namespace qtune::models {
namespace {

constexpr int64_t kIgnore = -100;
constexpr int64_t kLogitBudget = int64_t{1} << 26;  // f32 logits per forward in auto mode (256 MiB)
constexpr int64_t kMaxAutoRows = 16;

void check_sequence(const ScoredSequence& s, size_t index, int64_t vocab) {
  const auto n = static_cast<int64_t>(s.tokens.size());
  QTUNE_CHECK(n >= 2 && s.scored >= 1 && s.scored <= n - 1, "score_sequences: sequence ", index, " has ", n,
              " tokens and ", s.scored, " scored ones (need 1 <= scored < tokens)");
  for (int32_t id : s.tokens)
    QTUNE_CHECK(id >= 0 && id < vocab, "score_sequences: token id ", id, " of sequence ", index,
                " is outside the model's vocabulary [0, ", vocab, "): does the tokenizer belong to this model?");
}

int64_t inputs(const ScoredSequence& s) { return static_cast<int64_t>(s.tokens.size()) - 1; }

// Sums -loss of the scored positions of rows [begin, end) of one padded forward.
void score_batch(Llama& model, const std::vector<ScoredSequence>& sequences, size_t begin, size_t end, int64_t width,
                 std::vector<double>& out) {
  const auto rows = static_cast<int64_t>(end - begin);
  std::vector<int64_t> tokens(static_cast<size_t>(rows * width), 0);  // id 0 pads: any valid id does
  std::vector<int64_t> targets(tokens.size(), kIgnore);
  for (size_t i = begin; i < end; ++i) {
    const ScoredSequence& s = sequences[i];
    const auto row = static_cast<size_t>(static_cast<int64_t>(i - begin) * width);
    const int64_t n = inputs(s);
    for (int64_t t = 0; t < n; ++t) tokens[row + static_cast<size_t>(t)] = s.tokens[static_cast<size_t>(t)];
    for (int64_t t = n - s.scored; t < n; ++t)
      targets[row + static_cast<size_t>(t)] = s.tokens[static_cast<size_t>(t + 1)];
  }
  const Device device = model.options().device;
  const Tensor logits = model.forward(Tensor::from_vector(tokens, {rows, width}, device));  // [B, T, V]
  const std::vector<double> nll =
      ops::cross_entropy_per_position(logits, Tensor::from_vector(targets, {rows, width}, device)).to_vector<double>();
  for (size_t i = begin; i < end; ++i) {
    const auto row = static_cast<size_t>(static_cast<int64_t>(i - begin) * width);
    double ll = 0;
    for (int64_t t = 0; t < width; ++t) ll -= nll[row + static_cast<size_t>(t)];  // ignored positions hold 0
    out[i] = ll;
  }
}

}  // namespace

int64_t auto_batch_rows(int64_t width, int64_t vocab) {
  return std::clamp<int64_t>(kLogitBudget / std::max<int64_t>(1, width * vocab), 1, kMaxAutoRows);
}

std::vector<double> score_sequences(Llama& model, const std::vector<ScoredSequence>& sequences, int64_t batch_size,
                                    const ScoringProgress& progress) {
  const int64_t vocab = model.config().vocab_size;
  for (size_t i = 0; i < sequences.size(); ++i) check_sequence(sequences[i], i, vocab);
  NoGradGuard no_grad;
  EvalModeGuard eval(model);
  std::vector<double> out(sequences.size());
  size_t begin = 0;
  while (begin < sequences.size()) {
    // Grow the batch while its padded width still allows one more row.
    size_t end = begin + 1;
    int64_t width = inputs(sequences[begin]);
    while (end < sequences.size()) {
      const int64_t wider = std::max(width, inputs(sequences[end]));
      const int64_t limit = batch_size > 0 ? batch_size : auto_batch_rows(wider, vocab);
      if (static_cast<int64_t>(end - begin) + 1 > limit) break;
      width = wider;
      ++end;
    }
    score_batch(model, sequences, begin, end, width, out);
    if (progress) progress(static_cast<int64_t>(end), static_cast<int64_t>(sequences.size()));
    begin = end;
  }
  return out;
}

}  // namespace qtune::models
