#pragma once
// A Llama model's hyperparameters, as Hugging Face's `config.json` states them.
#include <cstdint>
#include <string>
#include <vector>

#include "ops/rope.h"

namespace qtune::models {

struct LlamaConfig {
  int64_t vocab_size = 32000;
  int64_t hidden_size = 4096;
  int64_t intermediate_size = 11008;
  int64_t num_hidden_layers = 32;
  int64_t num_attention_heads = 32;
  int64_t num_key_value_heads = 32;
  int64_t head_dim = 0;  // 0: hidden_size / num_attention_heads
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  ops::RopeScaling rope_scaling;
  int64_t max_position_embeddings = 2048;
  bool tie_word_embeddings = false;
  int32_t bos_token_id = 1;               // -1: none
  std::vector<int32_t> eos_token_ids{2};  // config.json allows an int or a list
  std::string torch_dtype = "float32";    // the checkpoint's dtype as the config states it

  int64_t resolved_head_dim() const { return head_dim > 0 ? head_dim : hidden_size / num_attention_heads; }
  int64_t num_parameters() const;  // after validate(), which bounds it
  double parameter_count() const;  // the same, in floating point: no overflow whatever the sizes
  // Checks the values agree with one another (heads divide, head_dim even, ...); throws naming the field.
  void validate() const;
};

// Refuses a model whose weights cannot fit this machine's memory (host_memory_bytes) at `bytes_per_parameter`:
// an Error naming `source` (config.json), the size keys and both amounts, before anything is allocated.
void check_fits_memory(const LlamaConfig& config, double bytes_per_parameter, const std::string& source);

// Same model: every field equal, head_dim compared as resolved, llama3 scaling parameters compared only
// when the scaling is on.
bool operator==(const LlamaConfig& a, const LlamaConfig& b);

// Parses config.json text (and check_fits_memory at 4 bits a parameter, the least any qtune storage takes).
// An unsupported model_type, a missing required field, a wrongly typed or
// unsupported value (e.g. rope_scaling.rope_type other than "llama3") fails with an Error naming
// `source` and the field. Unknown extra fields are ignored, as transformers ignores them.
// Required: model_type ("llama"), vocab_size, hidden_size, intermediate_size, num_hidden_layers,
// num_attention_heads. The rest default as transformers' LlamaConfig does (num_key_value_heads =
// num_attention_heads, bos 1, eos 2 when absent; null bos/eos means none). RoPE is read from either
// spelling: transformers 4's `rope_theta` + `rope_scaling`, or transformers 5's `rope_parameters`.
// The dtype comes from `dtype` (transformers 5) or `torch_dtype`. attention_bias / mlp_bias true and
// hidden_act other than "silu" are rejected.
LlamaConfig parse_llama_config(const std::string& json_text, const std::string& source = "config.json");
// A config.json file, or a directory holding one. check_fits refuses a model whose 4-bit weights alone exceed this
// machine's memory (false only to reason about such a model, as `qtune plan` does).
LlamaConfig load_llama_config(const std::string& path, bool check_fits = true);
// A config.json for this config (model_type "llama", architectures ["LlamaForCausalLM"]) in the
// transformers 4 spelling (rope_theta, rope_scaling, torch_dtype) that every reader understands;
// parse_llama_config(llama_config_to_json(c)) == c.
std::string llama_config_to_json(const LlamaConfig& config);

}  // namespace qtune::models
