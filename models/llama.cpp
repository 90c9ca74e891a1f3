#include "models/llama.h"

#include <algorithm>
#include <optional>
#include <string>
#include <tuple>

#include "engine/autograd.h"
#include "engine/check.h"
#include "engine/checkpoint.h"
#include "engine/rng.h"
#include "models/pending_linear.h"
#include "ops/activation.h"
#include "ops/attention.h"
#include "ops/cross_entropy.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"
#include "ops/rope.h"

namespace qtune::models {
namespace {

// The child a slot holds, as the class the forward code expects; a pass that swapped in something else
// gets an error naming the slot rather than undefined behaviour.
template <class T>
T& child_as(const ModulePtr& slot, const char* name) {
  auto* typed = dynamic_cast<T*>(slot.get());
  QTUNE_CHECK(typed != nullptr, "Llama: module ", name, " is a ", slot->type_name(), ", expected a different kind");
  return *typed;
}

// Llama projections have no bias. The generator only feeds Linear's own default init, which the Llama
// constructor overwrites; a local one keeps the process-wide default generator untouched.
ModulePtr make_linear(int64_t in, int64_t out, const LlamaOptions& options, Generator& scratch) {
  if (options.defer_projections) return std::make_shared<PendingLinear>(in, out);
  return std::make_shared<nn::Linear>(
      in, out,
      nn::Linear::Options{.bias = false, .dtype = options.dtype, .device = options.device, .generator = &scratch});
}

ModulePtr make_norm(const LlamaConfig& config, const LlamaOptions& options) {
  return std::make_shared<nn::RMSNorm>(
      config.hidden_size,
      nn::RMSNorm::Options{.eps = config.rms_norm_eps, .dtype = options.dtype, .device = options.device});
}

bool is_norm_weight(const std::string& name) {
  return name.ends_with("layernorm.weight") || name == "model.norm.weight";
}

}  // namespace

LlamaAttention::LlamaAttention(const LlamaConfig& config, const LlamaOptions& options)
    : Module("LlamaAttention"),
      n_heads_(config.num_attention_heads),
      n_kv_heads_(config.num_key_value_heads),
      head_dim_(config.resolved_head_dim()) {
  Generator scratch(options.seed);
  const int64_t c = config.hidden_size;
  q_proj = make_linear(c, n_heads_ * head_dim_, options, scratch);
  k_proj = make_linear(c, n_kv_heads_ * head_dim_, options, scratch);
  v_proj = make_linear(c, n_kv_heads_ * head_dim_, options, scratch);
  o_proj = make_linear(n_heads_ * head_dim_, c, options, scratch);
  register_module("q_proj", &q_proj);
  register_module("k_proj", &k_proj);
  register_module("v_proj", &v_proj);
  register_module("o_proj", &o_proj);
}

Tensor LlamaAttention::forward(const Tensor& x, const Tensor& cos, const Tensor& sin, Tensor* k_cache,
                               Tensor* v_cache) {
  QTUNE_CHECK(x.dim() == 3, "LlamaAttention: x must be [B, T, C], got ", shape_str(x.shape()));
  QTUNE_CHECK((k_cache == nullptr) == (v_cache == nullptr), "LlamaAttention: pass both caches or neither");
  const int64_t b = x.size(0), t = x.size(1);
  const Tensor q = ops::rope(q_proj->forward(x).view({b, t, n_heads_, head_dim_}), cos, sin);
  Tensor k = ops::rope(k_proj->forward(x).view({b, t, n_kv_heads_, head_dim_}), cos, sin);
  Tensor v = v_proj->forward(x).view({b, t, n_kv_heads_, head_dim_});
  if (k_cache != nullptr) {
    *k_cache = kv_cache_append(std::move(*k_cache), k);
    *v_cache = kv_cache_append(std::move(*v_cache), v);
    k = *k_cache;
    v = *v_cache;
  }
  // Causal masking lines the last query up with the last key, so cached positions stay visible.
  const Tensor out = ops::scaled_dot_product_attention(q, k, v, /*causal=*/true);
  return o_proj->forward(out.view({b, t, n_heads_ * head_dim_}));
}

LlamaMLP::LlamaMLP(const LlamaConfig& config, const LlamaOptions& options) : Module("LlamaMLP") {
  Generator scratch(options.seed);
  gate_proj = make_linear(config.hidden_size, config.intermediate_size, options, scratch);
  up_proj = make_linear(config.hidden_size, config.intermediate_size, options, scratch);
  down_proj = make_linear(config.intermediate_size, config.hidden_size, options, scratch);
  register_module("gate_proj", &gate_proj);
  register_module("up_proj", &up_proj);
  register_module("down_proj", &down_proj);
}

Tensor LlamaMLP::forward(const Tensor& x) {
  return down_proj->forward(ops::swiglu(gate_proj->forward(x), up_proj->forward(x)));
}

LlamaDecoderLayer::LlamaDecoderLayer(const LlamaConfig& config, const LlamaOptions& options)
    : Module("LlamaDecoderLayer") {
  input_layernorm = make_norm(config, options);
  self_attn = std::make_shared<LlamaAttention>(config, options);
  post_attention_layernorm = make_norm(config, options);
  mlp = std::make_shared<LlamaMLP>(config, options);
  // transformers' registration order, so named_parameters() lists tensors as HF does.
  register_module("self_attn", &self_attn);
  register_module("mlp", &mlp);
  register_module("input_layernorm", &input_layernorm);
  register_module("post_attention_layernorm", &post_attention_layernorm);
}

Tensor LlamaDecoderLayer::forward(const Tensor& h, const Tensor& cos, const Tensor& sin, Tensor* k_cache,
                                  Tensor* v_cache) {
  auto& attn = child_as<LlamaAttention>(self_attn, "self_attn");
  const Tensor h2 = h + attn.forward(input_layernorm->forward(h), cos, sin, k_cache, v_cache);
  return h2 + mlp->forward(post_attention_layernorm->forward(h2));
}

LlamaModel::LlamaModel(const LlamaConfig& config, const LlamaOptions& options)
    : Module("LlamaModel"), config_(config), options_(options) {
  Generator scratch(options.seed);
  embed_tokens = std::make_shared<nn::Embedding>(
      config.vocab_size, config.hidden_size,
      nn::Embedding::Options{.dtype = options.dtype, .device = options.device, .generator = &scratch});
  auto list = std::make_shared<ModuleList>();
  for (int64_t i = 0; i < config.num_hidden_layers; ++i)
    list->append(std::make_shared<LlamaDecoderLayer>(config, options));
  layers = list;
  norm = make_norm(config, options);
  register_module("embed_tokens", &embed_tokens);
  register_module("layers", &layers);
  register_module("norm", &norm);
}

Tensor LlamaModel::forward(const Tensor& tokens, KVCache* cache) {
  QTUNE_CHECK(tokens.dim() == 2 && (tokens.dtype() == DType::i64 || tokens.dtype() == DType::i32),
              "Llama: tokens must be [B, T] of i64 or i32, got ", shape_str(tokens.shape()), " ",
              dtype_name(tokens.dtype()));
  auto& list = child_as<ModuleList>(layers, "model.layers");
  const auto n_layers = list.size();
  // Decoding with a cache is inference: the appended keys and values carry no autograd history.
  std::optional<NoGradGuard> no_grad;
  if (cache != nullptr) {
    no_grad.emplace();
    if (cache->k.empty()) {
      cache->k.resize(n_layers);
      cache->v.resize(n_layers);
    }
    QTUNE_CHECK(cache->k.size() == n_layers && cache->v.size() == n_layers, "Llama: KVCache holds ", cache->k.size(),
                " layers of keys and ", cache->v.size(), " of values, the model has ", n_layers);
  }
  const int64_t start = cache != nullptr ? cache->length() : 0;
  // Past the trained context RoPE extrapolates and the model's numbers mean nothing: refuse, as every caller
  // (training, eval windows, generation) should have before reaching here.
  QTUNE_CHECK(start + tokens.size(1) <= config_.max_position_embeddings, "Llama: the input reaches position ",
              start + tokens.size(1) - 1, ", past the model's context of ", config_.max_position_embeddings,
              " positions (max_position_embeddings in config.json): use shorter sequences");
  // One table for every layer: positions continue after the cached ones.
  const auto [cos, sin] = rope_rows(start, tokens.size(1));

  Tensor h = embed_tokens->forward(tokens.to(options_.device));
  const bool recompute =
      options_.activation_checkpointing && cache == nullptr && is_training() && autograd::grad_enabled();
  for (size_t i = 0; i < n_layers; ++i) {
    auto& layer = child_as<LlamaDecoderLayer>(list.slot(i), "model.layers.N");
    Tensor* k_cache = cache ? &cache->k[i] : nullptr;
    Tensor* v_cache = cache ? &cache->v[i] : nullptr;
    const LayerFn run = [&layer, cos, sin, k_cache, v_cache](const Tensor& x) {
      return layer.forward(x, cos, sin, k_cache, v_cache);
    };
    const auto run_layer = [this, i, run](const Tensor& x) {
      return layer_runner_ ? layer_runner_(i, x, run) : run(x);
    };
    if (recompute) {
      h = checkpoint([run_layer](const std::vector<Tensor>& in) { return std::vector<Tensor>{run_layer(in[0])}; },
                     {h})[0];
    } else {
      h = run_layer(h);
    }
  }
  return norm->forward(h);
}

Llama::Llama(const LlamaConfig& config, const LlamaOptions& options)
    : Module("LlamaForCausalLM"), config_(config), options_(options) {
  config_.validate();
  QTUNE_CHECK(is_floating(options.dtype), "Llama: dtype must be floating, got ", dtype_name(options.dtype));
  // Deferred projections are stored quantized by the loader: at least 4 bits each.
  if (options.device.is_cpu()) {
    check_fits_memory(config_, options.defer_projections ? 0.5 : double(dtype_size(options.dtype)),
                      "Llama in " + std::string(dtype_name(options.dtype)));
  }
  const bool init = parameter_init_enabled();
  {
    // The submodules' own default init would be overwritten by the Llama init below: only allocate.
    SkipInitGuard allocate_only;
    model = std::make_shared<LlamaModel>(config_, options);
    if (!config_.tie_word_embeddings) {
      Generator scratch(options.seed);
      LlamaOptions head_options = options;
      head_options.defer_projections = false;  // the head is not a decoder projection
      lm_head = make_linear(config_.hidden_size, config_.vocab_size, head_options, scratch);
    }
  }
  register_module("model", &model);
  if (lm_head) register_module("lm_head", &lm_head);
  if (!init) return;  // a loader fills every parameter next
  // One generator walks the parameters in HF order, so a seed names one model whatever the block sizes.
  Generator gen(options.seed);
  NoGradGuard no_grad;
  for (auto& [name, p] : named_parameters()) {
    if (is_norm_weight(name))
      p.fill_(1.0);
    else
      p.copy_(randn(p.shape(), p.dtype(), p.device(), &gen, 0.0, 0.02));
  }
}

Module& Llama::lm_head_module() {
  if (lm_head) return *lm_head;
  return *child_as<LlamaModel>(model, "model").embed_tokens;
}

Tensor Llama::forward(const Tensor& tokens, KVCache* cache) {
  auto& base = child_as<LlamaModel>(model, "model");
  std::optional<NoGradGuard> no_grad;
  if (cache != nullptr) no_grad.emplace();
  const Tensor hidden = base.forward(tokens, cache);
  if (lm_head) return lm_head->forward(hidden);
  // Tied: the embedding table itself is the output projection, so its gradient sums both uses.
  auto& embed = child_as<nn::Embedding>(base.embed_tokens, "model.embed_tokens");
  return ops::linear(hidden, embed.weight());
}

std::pair<Tensor, Tensor> LlamaModel::rope_rows(int64_t start, int64_t length) {
  const int64_t end = start + length;
  if (!rope_cos_.defined() || rope_cos_.size(0) < end) {
    int64_t rows = std::max<int64_t>(64, rope_cos_.defined() ? rope_cos_.size(0) : 0);
    while (rows < end) rows *= 2;
    rows = std::max(end, std::min(rows, config_.max_position_embeddings));
    const DType table_dtype = options_.dtype == DType::f64 ? DType::f64 : DType::f32;
    std::tie(rope_cos_, rope_sin_) = ops::rope_tables(0, rows, config_.resolved_head_dim(), config_.rope_theta,
                                                      config_.rope_scaling, table_dtype, options_.device);
  }
  return {rope_cos_.narrow(0, start, length), rope_sin_.narrow(0, start, length)};
}

Tensor Llama::loss(const Tensor& tokens, const Tensor& targets) {
  QTUNE_CHECK(targets.shape() == tokens.shape(), "Llama::loss: targets ", shape_str(targets.shape()),
              " must match tokens ", shape_str(tokens.shape()));
  // Counted while the targets are still on the host: the loss then needs nothing back from a GPU.
  const Tensor host_targets = targets.to(DType::i64);
  const int64_t counted = host_targets.device().is_cpu() ? ops::count_targets(host_targets) : -1;
  return ops::cross_entropy(forward(tokens), host_targets.to(options_.device), -100, counted);
}

}  // namespace qtune::models
