#include "models/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "engine/autograd.h"
#include "engine/check.h"
#include "engine/rng.h"

namespace qtune::models {
namespace {

void check_options(const SamplingOptions& o) {
  QTUNE_CHECK(o.temperature >= 0.0 && std::isfinite(o.temperature),
              "sampling: temperature must be finite and >= 0, got ", o.temperature);
  QTUNE_CHECK(o.top_k >= 0, "sampling: top_k must be >= 0, got ", o.top_k);
  QTUNE_CHECK(o.top_p > 0.0 && o.top_p <= 1.0, "sampling: top_p must be in (0, 1], got ", o.top_p);
  QTUNE_CHECK(o.max_new_tokens >= 0, "sampling: max_new_tokens must be >= 0, got ", o.max_new_tokens);
}

int32_t argmax(const std::vector<float>& logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

// logits: [1, T, V] -> the last position's row as f32.
std::vector<float> last_row(const Tensor& logits) { return logits.select(1, logits.size(1) - 1).to_vector<float>(); }

}  // namespace

int32_t sample_token(const std::vector<float>& logits, const SamplingOptions& options, double u) {
  check_options(options);
  QTUNE_CHECK(!logits.empty(), "sample_token: empty logits");
  for (float x : logits) QTUNE_CHECK(!std::isnan(x), "sample_token: logits contain NaN");
  QTUNE_CHECK(u >= 0.0 && u < 1.0, "sample_token: u must be in [0, 1), got ", u);
  if (options.temperature == 0.0) return argmax(logits);

  // Candidates by decreasing logit (ties: lower id first, as argmax picks), so that top-k and top-p
  // are prefixes and tiny top_p or top_k = 1 reduce to greedy.
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return logits[static_cast<size_t>(a)] > logits[static_cast<size_t>(b)];
  });
  size_t kept = order.size();
  if (options.top_k > 0) kept = std::min(kept, static_cast<size_t>(options.top_k));

  // softmax(logits / T) over the kept candidates, in double so that small probabilities survive.
  const double top = logits[static_cast<size_t>(order[0])] / options.temperature;
  std::vector<double> p(kept);
  double total = 0.0;
  for (size_t i = 0; i < kept; ++i) {
    p[i] = std::exp(logits[static_cast<size_t>(order[i])] / options.temperature - top);
    total += p[i];
  }
  if (options.top_p < 1.0) {
    // Smallest prefix whose probability reaches top_p (at least one token).
    double cumulative = 0.0;
    size_t n = 0;
    while (n < kept) {
      cumulative += p[n] / total;
      ++n;
      if (cumulative >= options.top_p) break;
    }
    kept = n;
    total = std::accumulate(p.begin(), p.begin() + static_cast<std::ptrdiff_t>(kept), 0.0);
  }
  // Inverse CDF of the renormalized distribution, walking candidates in decreasing probability.
  const double target = u * total;
  double cumulative = 0.0;
  for (size_t i = 0; i < kept; ++i) {
    cumulative += p[i];
    if (target < cumulative) return order[i];
  }
  return order[kept - 1];  // u * total rounded up to the last boundary
}

int64_t max_new_tokens_within(const LlamaConfig& config, int64_t prompt_length) {
  return std::max<int64_t>(0, config.max_position_embeddings - prompt_length + 1);
}

std::vector<int32_t> generate(Llama& model, const std::vector<int32_t>& prompt, const SamplingOptions& options,
                              const std::function<bool(int32_t)>& on_token) {
  check_options(options);
  const int64_t vocab = model.config().vocab_size;
  QTUNE_CHECK(!prompt.empty(), "generate: the prompt is empty (start it with the bos id)");
  for (int32_t id : prompt)
    QTUNE_CHECK(id >= 0 && id < vocab, "generate: prompt id ", id, " outside the vocabulary [0, ", vocab, ")");
  const int64_t context = model.config().max_position_embeddings, length = static_cast<int64_t>(prompt.size());
  QTUNE_CHECK(length <= context, "generate: the prompt has ", length,
              " tokens, more than the model's context (max_position_embeddings = ", context,
              " in config.json): shorten it");
  // The last new token is sampled, never fed back: length + max_new_tokens - 1 positions are run.
  QTUNE_CHECK(options.max_new_tokens <= max_new_tokens_within(model.config(), length), "generate: ", length,
              " prompt tokens + max_new_tokens ", options.max_new_tokens,
              " would run past the model's context (max_position_embeddings = ", context, "): ask for at most ",
              max_new_tokens_within(model.config(), length), " new tokens");
  const std::vector<int32_t>& stop_ids = options.stop_ids.empty() ? model.config().eos_token_ids : options.stop_ids;

  std::vector<int32_t> out;
  if (options.max_new_tokens == 0) return out;
  NoGradGuard no_grad;
  EvalModeGuard eval(model);
  KVCache cache;
  Generator gen(options.seed);
  const Device device = model.options().device;
  std::vector<float> logits =
      last_row(model.forward(Tensor::from_vector(prompt, {1, static_cast<int64_t>(prompt.size())}, device), &cache));
  while (true) {
    // One draw per step whatever the options, so the stream position depends only on the step.
    const double u = rand({1}, DType::f64, Device::cpu(), &gen).item();
    const int32_t id = sample_token(logits, options, u);
    out.push_back(id);
    const bool go_on = !on_token || on_token(id);
    if (!go_on || std::find(stop_ids.begin(), stop_ids.end(), id) != stop_ids.end() ||
        static_cast<int64_t>(out.size()) >= options.max_new_tokens)
      break;
    logits = last_row(model.forward(Tensor::from_vector(std::vector<int32_t>{id}, {1, 1}, device), &cache));
  }
  return out;
}

}  // namespace qtune::models
