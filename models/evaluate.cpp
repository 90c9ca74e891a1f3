// Perplexity of documents scored in lm-evaluation-harness's rolling windows (models/evaluate.h).
#include "models/evaluate.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <numeric>

#include "data/data_loader.h"
#include "data/eval_data.h"
#include "engine/autograd.h"
#include "engine/check.h"
#include "engine/module.h"
#include "models/sequence_scoring.h"

namespace qtune::models {
namespace {

// The harness's get_rolling_token_windows(context_len = 1) + make_disjoint_window for one document of
// `count` tokens held in seq = prefix + tokens (seq[i + 1] is token i). A window that leaves the
// first `end` tokens predicted reads seq[max(0, end - length), end) and scores its last targets: the
// first window starts at the prefix, a full later one at the token just before its predictions, and
// the last, partial one reaches back for a full `length` inputs -- the harness gives it the most
// context it can ("for the last pair, we provide the full context"), and so do we, so that numbers
// compare with its wikitext results.
void append_rolling_windows(const std::vector<int32_t>& seq, int64_t length, std::vector<ScoredSequence>& out) {
  const auto count = static_cast<int64_t>(seq.size()) - 1;
  for (int64_t done = 0; done < count;) {
    const int64_t end = done + std::min(length, count - done);
    const int64_t start = std::max<int64_t>(0, end - length);
    out.push_back({std::vector<int32_t>(seq.begin() + start, seq.begin() + end + 1), end - done});
    done = end;
  }
}

}  // namespace

double PerplexityResult::token_loss() const { return -log_likelihood / static_cast<double>(tokens); }
double PerplexityResult::token_perplexity() const { return std::exp(token_loss()); }
double PerplexityResult::word_perplexity() const { return std::exp(-log_likelihood / static_cast<double>(words)); }
double PerplexityResult::byte_perplexity() const { return std::exp(-log_likelihood / static_cast<double>(bytes)); }
double PerplexityResult::bits_per_byte() const {
  return -log_likelihood / static_cast<double>(bytes) / std::numbers::ln2;
}

PerplexityResult evaluate_perplexity(Llama& model, const data::Tokenizer& tokenizer,
                                     const std::vector<std::string>& documents, int64_t max_length,
                                     const EvalProgress& progress, int64_t batch_size) {
  const int64_t context = model.config().max_position_embeddings;
  const int64_t length = max_length > 0 ? max_length : context;
  QTUNE_CHECK(length <= context, "perplexity: windows of ", length,
              " tokens are longer than the model's context (max_position_embeddings = ", context,
              " in config.json): use a window of at most ", context);
  const int32_t prefix = data::prefix_token_id(tokenizer);
  PerplexityResult result;
  result.documents = static_cast<int64_t>(documents.size());
  std::vector<ScoredSequence> windows;
  for (size_t d = 0; d < documents.size(); ++d) {
    std::vector<int32_t> seq{prefix};
    const std::vector<int32_t> tokens = tokenizer.encode(documents[d]);
    seq.insert(seq.end(), tokens.begin(), tokens.end());
    append_rolling_windows(seq, length, windows);
    result.tokens += static_cast<int64_t>(tokens.size());
    result.words += data::count_words(documents[d]);
    result.bytes += static_cast<int64_t>(documents[d].size());
  }
  const std::vector<double> ll = score_sequences(model, windows, batch_size, progress);
  result.log_likelihood = std::accumulate(ll.begin(), ll.end(), 0.0);
  return result;
}

double ChunkedPerplexity::perplexity() const { return std::exp(-log_likelihood / static_cast<double>(scored)); }

ChunkedPerplexity evaluate_llama_cpp_perplexity(Llama& model, const data::Tokenizer& tokenizer, const std::string& text,
                                                int64_t n_ctx, const EvalProgress& progress, int64_t batch_size) {
  const int64_t context = model.config().max_position_embeddings;
  QTUNE_CHECK(n_ctx >= 4 && n_ctx <= context, "llama.cpp perplexity: a context of ", n_ctx,
              " tokens must be at least 4 and at most the model's ", context, " (max_position_embeddings)");
  const std::vector<int32_t> tokens = tokenizer.encode(text, /*add_bos=*/true);
  QTUNE_CHECK(static_cast<int64_t>(tokens.size()) >= 2 * n_ctx, "llama.cpp perplexity: the text has ", tokens.size(),
              " tokens; a context of ", n_ctx, " needs at least ", 2 * n_ctx);
  const std::optional<int32_t> bos = tokenizer.bos_id();
  const int64_t first = n_ctx / 2;
  ChunkedPerplexity result;
  result.chunks = static_cast<int64_t>(tokens.size()) / n_ctx;
  std::vector<ScoredSequence> chunks;
  for (int64_t c = 0; c < result.chunks; ++c) {
    std::vector<int32_t> chunk(tokens.begin() + c * n_ctx, tokens.begin() + (c + 1) * n_ctx);
    if (bos) chunk[0] = *bos;
    chunks.push_back({std::move(chunk), n_ctx - first - 1});
    result.scored += n_ctx - first - 1;
  }
  const std::vector<double> ll = score_sequences(model, chunks, batch_size, progress);
  result.log_likelihood = std::accumulate(ll.begin(), ll.end(), 0.0);
  return result;
}

double mean_stream_loss(Llama& model, const std::vector<int32_t>& tokens, int64_t seq_len, int64_t batch) {
  NoGradGuard no_grad;
  EvalModeGuard eval_mode(model);
  auto loader = data::DataLoader::from_tokens(tokens, seq_len, batch, /*seed=*/0);
  const int64_t batches = loader.batches_per_epoch();  // >= 1: the loader refuses a shorter stream
  double sum = 0;
  for (int64_t i = 0; i < batches; ++i) {
    const data::Batch b = loader.next();
    sum += model.loss(b.tokens, b.targets).item();
  }
  return sum / static_cast<double>(batches);
}

}  // namespace qtune::models
