#pragma once
// Autoregressive sampling with a KV cache.
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "models/llama.h"

namespace qtune::models {

struct SamplingOptions {
  int64_t max_new_tokens = 128;
  double temperature = 1.0;       // 0: greedy (argmax)
  int64_t top_k = 0;              // 0: off
  double top_p = 1.0;             // 1: off; nucleus over probabilities after temperature and top-k
  uint64_t seed = 0;              // same seed, prompt and model -> same tokens
  std::vector<int32_t> stop_ids;  // eos ids; empty: the model config's eos_token_ids
};

// Picks the next id from logits [vocab] (f32) as the options say; `u` is a uniform draw in [0, 1).
// temperature 0: argmax (the lowest id among equal maxima). Otherwise softmax(logits / temperature)
// restricted to the top_k largest, then to the smallest prefix (by decreasing probability) whose
// probability reaches top_p, renormalized; the id returned is where u falls in the cumulative
// distribution of that set walked in decreasing probability (ties: lower id first). So u near 0 picks
// the most likely token, and top_k = 1 or a tiny top_p is greedy.
int32_t sample_token(const std::vector<float>& logits, const SamplingOptions& options, double u);

// The most new tokens a prompt of `prompt_length` leaves room for in the model's context (the last one is
// sampled, never run through the model).
int64_t max_new_tokens_within(const LlamaConfig& config, int64_t prompt_length);

// Runs the prompt through the model once (filling a KV cache), then one token at a time, in eval mode
// without autograd (the model's mode is restored afterwards). Step i samples with the i-th uniform of
// Generator(options.seed). Stops after a stop id or max_new_tokens ids. `on_token` sees each new id as
// it is chosen (return false to stop early). Returns the new ids (not the prompt), including a final
// stop id. A prompt longer than the context, or more new tokens than max_new_tokens_within, is an Error.
std::vector<int32_t> generate(Llama& model, const std::vector<int32_t>& prompt, const SamplingOptions& options,
                              const std::function<bool(int32_t)>& on_token = {});

}  // namespace qtune::models
