#pragma once
// Shared by the Llama tests: the golden checkpoints of tools/goldens/gen_llama.py, a tiny config,
// scratch directories and the relative error the parity tests report.

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/module.h"
#include "engine/tensor.h"
#include "models/llama.h"
#include "models/llama_config.h"
#include "tests/scratch_files.h"

namespace qtune::testing {

inline const char* const kLlamaVariants[] = {"tied_gqa_llama3", "untied_mha", "untied_gqa_headdim"};

inline std::string llama_golden_dir(const std::string& variant) {
  return std::string(QTUNE_GOLDEN_DIR) + "/llama/" + variant;
}

// max|actual - expected| / max|expected|: one number per tensor, insensitive to the elements near zero
// that make an elementwise relative error meaningless.
inline double relative_error(const Tensor& actual, const Tensor& expected) {
  const auto a = actual.to_vector<double>(), e = expected.to_vector<double>();
  double diff = 0.0, scale = 0.0;
  for (size_t i = 0; i < a.size() && i < e.size(); ++i) {
    diff = std::max(diff, std::fabs(a[i] - e[i]));
    scale = std::max(scale, std::fabs(e[i]));
  }
  if (a.size() != e.size()) return INFINITY;
  return scale > 0.0 ? diff / scale : diff;
}

// Small enough for fast tests, with GQA, an odd intermediate size and a non-default head_dim.
inline models::LlamaConfig tiny_llama_config(bool tied = false) {
  models::LlamaConfig c;
  c.vocab_size = 61;
  c.hidden_size = 24;
  c.intermediate_size = 37;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 1000.0;
  c.max_position_embeddings = 128;
  c.tie_word_embeddings = tied;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  return c;
}

// tiny_llama_config with hidden 32 and MLP 64 (head dim 8, 2 kv heads): every projection dim is a multiple
// of 16 (fp8 GEMMs) and every in_features a multiple of 32 (QAT and int4 groups), so whole-model passes
// convert every projection.
inline models::LlamaConfig aligned_llama_config(bool tied = false) {
  models::LlamaConfig c = tiny_llama_config(tied);
  c.hidden_size = 32;
  c.intermediate_size = 64;
  return c;
}

// A fixed [2, 7] batch of ids below 61 (tiny_llama_config's vocabulary).
inline Tensor fixed_tokens() {
  return Tensor::from_vector(std::vector<int64_t>{1, 5, 9, 33, 2, 17, 60, 4, 8, 41, 12, 3, 7, 19}, {2, 7});
}

// Logits of fixed_tokens(), in eval mode without autograd.
inline Tensor eval_logits(models::Llama& model) {
  EvalModeGuard eval(model);
  NoGradGuard no_grad;
  return model.forward(fixed_tokens());
}

}  // namespace qtune::testing
