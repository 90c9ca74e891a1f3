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
int32_t sample_token(const std::vector<float>& logits, const SamplingOptions& options, double u);

// Runs the prompt through the model once, then one token at a time. `on_token` sees each new id as it
// is chosen (return false to stop early). Returns the new ids (not the prompt), including a final stop id.
std::vector<int32_t> generate(Llama& model, const std::vector<int32_t>& prompt, const SamplingOptions& options,
                              const std::function<bool(int32_t)>& on_token = {});

}  // namespace qtune::models
