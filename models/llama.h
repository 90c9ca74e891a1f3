#pragma once
// Llama decoder (docs/numerics.md §7) with Hugging Face parameter names, built from ops of the engine:
//   model.embed_tokens.weight                          [vocab, hidden]
//   model.layers.N.input_layernorm.weight              [hidden]
//   model.layers.N.self_attn.{q,k,v,o}_proj.weight     [out, in]
//   model.layers.N.post_attention_layernorm.weight     [hidden]
//   model.layers.N.mlp.{gate,up,down}_proj.weight      [out, in]
//   model.norm.weight                                  [hidden]
//   lm_head.weight                                     [vocab, hidden] (absent when tied)
#include <cstdint>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "engine/module.h"
#include "engine/tensor.h"
#include "models/kv_cache.h"
#include "models/llama_config.h"
#include "ops/nn/embedding.h"
#include "ops/nn/linear.h"
#include "ops/nn/rmsnorm.h"

namespace qtune::models {

struct LlamaOptions {
  DType dtype = DType::f32;  // parameter and activation dtype
  Device device = Device::cpu();
  uint64_t seed = 0;  // initialization (std 0.02 normal for linears and embedding, ones for norms)
  // Recompute each decoder layer's forward in backward (only while training with grad enabled).
  bool activation_checkpointing = false;
  // Decoder projections (q/k/v/o, gate/up/down) start as storage-less PendingLinear slots that a quantizing
  // loader fills, so their dense weights never exist in memory. Embedding, norms and lm_head are allocated.
  bool defer_projections = false;
};

class LlamaAttention : public Module { /* q_proj, k_proj, v_proj, o_proj */
 public:
  LlamaAttention(const LlamaConfig& config, const LlamaOptions& options);
  // x: [B, T, C]; cos/sin: [T, D/2] rope tables for these positions -> [B, T, C]. k_cache/v_cache:
  // both null, or this layer's [B, T_cached, Hkv, D] slots, which the new keys/values are appended to.
  Tensor forward(const Tensor& x, const Tensor& cos, const Tensor& sin, Tensor* k_cache, Tensor* v_cache);
  ModulePtr q_proj, k_proj, v_proj, o_proj;  // Linear, or whatever a pass replaced them with

 private:
  int64_t n_heads_, n_kv_heads_, head_dim_;
};

class LlamaMLP : public Module {
 public:
  LlamaMLP(const LlamaConfig& config, const LlamaOptions& options);
  Tensor forward(const Tensor& x) override;  // x: [B, T, C] -> [B, T, C]
  ModulePtr gate_proj, up_proj, down_proj;
};

class LlamaDecoderLayer : public Module {
 public:
  LlamaDecoderLayer(const LlamaConfig& config, const LlamaOptions& options);
  // h: [B, T, C] residual stream -> [B, T, C]; cos/sin and caches as LlamaAttention::forward.
  Tensor forward(const Tensor& h, const Tensor& cos, const Tensor& sin, Tensor* k_cache, Tensor* v_cache);
  ModulePtr input_layernorm, self_attn, post_attention_layernorm, mlp;
};

class LlamaModel : public Module {  // "model." prefix
 public:
  LlamaModel(const LlamaConfig& config, const LlamaOptions& options);
  // tokens: [B, T] i64/i32 -> final normalized hidden states [B, T, C] (see Llama::forward for the cache).
  Tensor forward(const Tensor& tokens, KVCache* cache);
  Tensor forward(const Tensor& tokens) override { return forward(tokens, nullptr); }
  ModulePtr embed_tokens, layers, norm;  // layers: ModuleList of LlamaDecoderLayer

  // How the forward runs decoder layer i on the residual stream h: run(h) unless a runner is set. Sharding
  // (dist/fsdp.h) sets one that gathers the layer's weights around the call. Inside activation checkpointing the
  // runner runs again when backward recomputes the layer.
  using LayerFn = std::function<Tensor(const Tensor& h)>;
  using LayerRunner = std::function<Tensor(size_t layer, const Tensor& h, const LayerFn& run)>;
  void set_layer_runner(LayerRunner runner) { layer_runner_ = std::move(runner); }

 private:
  // cos/sin of positions [start, start + length) on the model's device: rows of one table that grows
  // (doubling, up to the context) when a longer one is needed, so a forward neither builds nor uploads
  // tables. The rows are those rope_tables(start, length) would build.
  std::pair<Tensor, Tensor> rope_rows(int64_t start, int64_t length);

  LlamaConfig config_;
  LlamaOptions options_;
  LayerRunner layer_runner_;
  Tensor rope_cos_, rope_sin_;  // [P, head_dim / 2], positions 0..P-1
};

class Llama : public Module {  // LlamaForCausalLM
 public:
  // Validates the config and initializes every parameter from one Generator(options.seed), walking
  // named_parameters() in order: N(0, 0.02) for projections and embeddings, ones for norms. (Blocks
  // built on their own keep nn::Linear's default init.)
  Llama(const LlamaConfig& config, const LlamaOptions& options = {});

  // tokens: [B, T] i64/i32 -> logits [B, T, vocab] in the model dtype: f32 for f32 models, bf16 for
  // bf16 models (as transformers computes them; ops::cross_entropy reduces bf16 logits in f32).
  // With a cache, positions continue after the cached ones and the new keys/values are appended; such
  // a forward is inference only and records no autograd history. An empty KVCache is sized on first use.
  Tensor forward(const Tensor& tokens, KVCache* cache);
  Tensor forward(const Tensor& x) override { return forward(x, nullptr); }
  // Mean cross-entropy of next-token prediction; targets [B, T] (i64/i32) with -100 ignored. targets[t]
  // is the token that should follow tokens[t]: unlike transformers' `labels`, nothing is shifted here.
  Tensor loss(const Tensor& tokens, const Tensor& targets);

  const LlamaConfig& config() const { return config_; }
  const LlamaOptions& options() const { return options_; }
  Module& lm_head_module();  // lm_head, or the embedding when tied
  ModulePtr model, lm_head;  // lm_head null when tie_word_embeddings

 private:
  LlamaConfig config_;
  LlamaOptions options_;
};

}  // namespace qtune::models
