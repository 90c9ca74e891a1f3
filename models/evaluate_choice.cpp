// Multiple-choice accuracy in the hellaswag format (models/evaluate.h).
#include <algorithm>

#include "data/eval_data.h"
#include "engine/check.h"
#include "models/evaluate.h"
#include "models/sequence_scoring.h"

namespace qtune::models {
namespace {

// prefix + context + continuation tokens, as the harness's _encode_pair splits them, cut on the left to
// at most max_length inputs.
ScoredSequence choice_sequence(const data::Tokenizer& tokenizer, int32_t prefix, const data::ChoiceExample& ex,
                               size_t ending, int64_t max_length, const std::string& path) {
  const std::string_view context = data::strip_trailing_space(ex.ctx);
  const std::string whole = ex.ctx + " " + ex.endings[ending];  // = context + continuation
  const std::vector<int32_t> context_ids = tokenizer.encode(context);
  const std::vector<int32_t> whole_ids = tokenizer.encode(whole);
  QTUNE_CHECK(whole_ids.size() > context_ids.size(), path, ":", ex.line, ": ending ", ending,
              " adds no token to the context's ", context_ids.size());
  const auto scored = static_cast<int64_t>(whole_ids.size() - context_ids.size());
  QTUNE_CHECK(scored <= max_length, path, ":", ex.line, ": ending ", ending, " has ", scored,
              " tokens, more than the model's ", max_length, " positions");
  ScoredSequence s{{prefix}, scored};
  s.tokens.insert(s.tokens.end(), context_ids.begin(), context_ids.end());
  s.tokens.insert(s.tokens.end(), whole_ids.begin() + static_cast<std::ptrdiff_t>(context_ids.size()), whole_ids.end());
  const auto excess = static_cast<int64_t>(s.tokens.size()) - 1 - max_length;
  if (excess > 0) s.tokens.erase(s.tokens.begin(), s.tokens.begin() + excess);
  return s;
}

size_t argmax(const std::vector<double>& v) {
  return static_cast<size_t>(std::max_element(v.begin(), v.end()) - v.begin());  // the first of equals
}

}  // namespace

MultipleChoiceResult evaluate_multiple_choice(Llama& model, const data::Tokenizer& tokenizer,
                                              const std::string& jsonl_path, int64_t limit,
                                              const EvalProgress& progress, int64_t batch_size) {
  const std::vector<data::ChoiceExample> examples = data::load_choice_examples(jsonl_path, limit);
  const int32_t prefix = data::prefix_token_id(tokenizer);
  std::vector<ScoredSequence> sequences;
  for (const data::ChoiceExample& ex : examples)
    for (size_t j = 0; j < ex.endings.size(); ++j)
      sequences.push_back(
          choice_sequence(tokenizer, prefix, ex, j, model.config().max_position_embeddings, jsonl_path));
  const auto n = static_cast<int64_t>(examples.size());
  const std::vector<double> ll = score_sequences(model, sequences, batch_size, progress);

  MultipleChoiceResult result;
  result.examples = n;
  int64_t correct = 0, correct_norm = 0;
  auto next = ll.begin();
  for (const data::ChoiceExample& ex : examples) {
    std::vector<double> sums(next, next + static_cast<std::ptrdiff_t>(ex.endings.size())), normalized;
    next += static_cast<std::ptrdiff_t>(ex.endings.size());
    for (size_t j = 0; j < sums.size(); ++j) normalized.push_back(sums[j] / static_cast<double>(ex.endings[j].size()));
    correct += static_cast<int64_t>(argmax(sums)) == ex.label;
    correct_norm += static_cast<int64_t>(argmax(normalized)) == ex.label;
    result.log_likelihoods.push_back(std::move(sums));
  }
  result.acc = static_cast<double>(correct) / static_cast<double>(n);
  result.acc_norm = static_cast<double>(correct_norm) / static_cast<double>(n);
  return result;
}

}  // namespace qtune::models
