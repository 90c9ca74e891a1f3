#include "tools/recipes/memory_plan.h"

#include <algorithm>
#include <set>

#include <fmt/core.h>

#include "dist/flat_layout.h"
#include "engine/check.h"
#include "engine/numerics/clip.h"
#include "engine/numerics/nf4.h"
#include "quant/qat_config.h"
#include "tools/recipes/progress.h"

namespace qtune::recipes {
namespace {

struct Projection {
  const char* name;
  int64_t out, in;
};

// A decoder layer's linears.
std::vector<Projection> projections_of(const models::LlamaConfig& c) {
  const int64_t d = c.resolved_head_dim(), q = c.num_attention_heads * d, kv = c.num_key_value_heads * d;
  return {{"q_proj", q, c.hidden_size},
          {"k_proj", kv, c.hidden_size},
          {"v_proj", kv, c.hidden_size},
          {"o_proj", c.hidden_size, q},
          {"gate_proj", c.intermediate_size, c.hidden_size},
          {"up_proj", c.intermediate_size, c.hidden_size},
          {"down_proj", c.hidden_size, c.intermediate_size}};
}

struct TensorShape {
  std::string name;
  DType dtype;
  int64_t count;
  int64_t unit = 1;
  bool trainable = false;
};

int64_t bytes_of(const std::vector<TensorShape>& tensors, bool trainable) {
  int64_t total = 0;
  for (const TensorShape& t : tensors)
    if (t.trainable == trainable) total += t.count * static_cast<int64_t>(dtype_size(t.dtype));
  return total;
}

// The tensors of one decoder layer as the recipe's passes leave them.
std::vector<TensorShape> layer_tensors(const PlanInput& in) {
  const models::LlamaConfig& c = in.model;
  const bool adapters = trains_adapters(in.recipe);
  const std::set<std::string> targets(in.lora_targets.begin(), in.lora_targets.end());
  std::vector<TensorShape> out;
  for (const Projection& p : projections_of(c)) {
    const int64_t n = p.out * p.in;
    if (in.recipe == Recipe::qlora) {
      QTUNE_CHECK(n % numerics::kNF4BlockSize == 0, p.name, " has ", n, " weights: NF4 needs whole blocks of ",
                  numerics::kNF4BlockSize);
      const int64_t group = numerics::kNF4BlockSize * numerics::kNF4ScalerBlockSize;
      out.push_back({std::string(p.name) + ".nf4_codes", DType::u8, n / 2, group / 2});
      out.push_back({std::string(p.name) + ".nf4_scalers", DType::i8, n / numerics::kNF4BlockSize,
                     numerics::kNF4ScalerBlockSize});
      out.push_back({std::string(p.name) + ".nf4_factors", DType::f32, (n + group - 1) / group});
      out.push_back({std::string(p.name) + ".nf4_mean", DType::f32, 1});
    } else {
      out.push_back({std::string(p.name) + ".weight", in.dtype, n, 1, !adapters});
    }
    if (adapters && targets.count(p.name)) {
      out.push_back({std::string(p.name) + ".lora_A", in.dtype, in.lora_rank * p.in, 1, true});
      out.push_back({std::string(p.name) + ".lora_B", in.dtype, p.out * in.lora_rank, 1, true});
    }
  }
  for (const char* norm : {"input_layernorm", "post_attention_layernorm"})
    out.push_back({norm, in.dtype, c.hidden_size, 1, !adapters});
  return out;
}

// Bytes one rank keeps of a layer: its shard of the trainable tensors (cut on whole norm blocks, as
// dist::Fsdp does) and of the others.
struct LayerShards {
  int64_t train = 0, fixed = 0, train_elements = 0;
};
LayerShards layer_shards(const std::vector<TensorShape>& tensors, int ranks) {
  std::vector<dist::Segment> train, fixed;
  for (const TensorShape& t : tensors) {
    if (t.trainable) {
      train.push_back({t.name, t.dtype, t.count, numerics::kSquaredNormBlock});
    } else {
      fixed.push_back({t.name, t.dtype, t.count, t.unit});
    }
  }
  LayerShards s;
  if (!train.empty()) {
    const dist::FlatLayout layout(train, ranks);
    s.train = layout.shard_bytes();
    s.train_elements = s.train / static_cast<int64_t>(dtype_size(train.front().dtype));
  }
  if (!fixed.empty()) s.fixed = dist::FlatLayout(fixed, ranks).shard_bytes();
  return s;
}

}  // namespace

MemoryPlan plan_memory(const PlanInput& in) {
  QTUNE_CHECK(in.ranks >= 1, "plan: --nproc must be at least 1, got ", in.ranks);
  QTUNE_CHECK(in.seq >= 1 && in.batch >= 1, "plan: --seq and --batch must be at least 1");
  QTUNE_CHECK(in.dtype == DType::f32 || in.dtype == DType::bf16, "plan: --dtype is f32 or bf16");
  QTUNE_CHECK(!in.offload || in.ranks > 1,
              "plan: --offload moves FSDP's shards to host memory: give --nproc 2 or "
              "more (a run offloads one GPU with --nproc 1 as a rank, which this plan does not model)");
  const models::LlamaConfig& c = in.model;
  const bool qat = fake_quantizes(in.recipe);
  if (qat)
    for (const Projection& p : projections_of(c)) quant::check_scheme_fits(in.qat_scheme, p.in, p.name);
  // Schemes that fake-quantize a linear's input too (8da4w) make each linear keep its own quantized copy.
  const bool qat_inputs = qat && quant::activation_spec(in.qat_scheme).has_value();
  const int64_t a = static_cast<int64_t>(dtype_size(in.dtype));
  const int64_t layers = c.num_hidden_layers, tokens = in.seq * in.batch;
  const bool adapters = trains_adapters(in.recipe);

  const std::vector<TensorShape> layer = layer_tensors(in);
  const int64_t layer_bytes = bytes_of(layer, true) + bytes_of(layer, false);
  const int64_t layer_trainable = bytes_of(layer, true);
  // The root: embeddings, final norm and (untied) head, trainable with the full-model recipes.
  std::vector<TensorShape> root = {{"embed_tokens", in.dtype, c.vocab_size * c.hidden_size, 1, !adapters},
                                   {"norm", in.dtype, c.hidden_size, 1, !adapters}};
  if (!c.tie_word_embeddings) root.push_back({"lm_head", in.dtype, c.vocab_size * c.hidden_size, 1, !adapters});
  const int64_t root_bytes = bytes_of(root, true) + bytes_of(root, false), root_trainable = bytes_of(root, true);

  MemoryPlan plan;
  const auto add = [&](std::string what, int64_t bytes, std::string detail, bool host = false) {
    plan.items.push_back({std::move(what), static_cast<uint64_t>(bytes), std::move(detail), host});
  };
  const int64_t moment_bytes = in.sgd ? 4 : 8;  // f32 moments per trainable element
  int64_t grads = 0;
  if (in.ranks == 1) {
    add("parameters", layers * layer_bytes + root_bytes, "the whole model");
    grads = layers * layer_trainable + root_trainable;
    const int64_t trainable_elements = grads / a;
    add("optimizer state", trainable_elements * moment_bytes, in.sgd ? "SGD momentum, f32" : "AdamW moments, f32");
    if (in.f32_masters && in.dtype != DType::f32)
      add("f32 masters", trainable_elements * 4, "model.master_dtype=f32: what the optimizer updates");
  } else {
    const LayerShards s = layer_shards(layer, in.ranks);
    const LayerShards r = layer_shards(root, in.ranks);
    const int64_t shards = layers * (s.train + s.fixed) + r.train, piece_grads = layers * s.train + r.train;
    if (in.offload) {
      add("parameters", root_bytes, "the whole embeddings (the shards are in host memory)");
      add("shards", shards, fmt::format("1/{} of every layer, padding included", in.ranks), true);
      add("shard gradients", piece_grads, "the rank's pieces", true);
    } else {
      add("parameters", shards + root_bytes,
          fmt::format("1/{} of every layer, padding included, and the whole embeddings", in.ranks));
    }
    add("gathered layers", 2 * layer_bytes, "the layer running and the next one, prefetched");
    grads = (in.offload ? 0 : piece_grads) + root_trainable;
    add("optimizer state", (layers * s.train_elements + r.train_elements) * moment_bytes,
        fmt::format("1/{} of the {}, f32", in.ranks, in.sgd ? "SGD momentum" : "AdamW moments"), in.offload);
    if (in.f32_masters && in.dtype != DType::f32)
      add("f32 masters", (layers * s.train_elements + r.train_elements) * 4,
          fmt::format("model.master_dtype=f32: 1/{} of what the optimizer updates", in.ranks), in.offload);
    // Offloaded, a gather first copies a shard up. (The reduce-scatter's result also passes through the device, but
    // only in backward, once the activations it overlaps are shrinking: counting it overshoots the measured peak.)
    add("communication buffers", layer_trainable + in.ranks * s.train + (in.offload ? s.train + s.fixed : 0),
        in.offload ? "a layer's whole gradients, the reduce-scatter's send buffer, the shard copied up for a gather"
                   : "a layer's whole gradients and the reduce-scatter's send buffer");
  }

  // What the forward keeps for backward, per token and layer: the two RMSNorm inputs (the residual stream), q,
  // k, v and the attention output with one f32 log-sum-exp per head, and SwiGLU's gate and up. A linear keeps
  // its input too, except an NF4 base, which only needs its own codes for the input's gradient: with qlora the
  // normed inputs and the SwiGLU product stay only where an adapter reads them. LoRA keeps each adapter's
  // rank-wide intermediate and, with dropout, its dropped-out input.
  const int64_t d = c.resolved_head_dim();
  const std::set<std::string> targets(in.lora_targets.begin(), in.lora_targets.end());
  const auto targeted = [&](std::initializer_list<const char*> names) {
    if (in.recipe != Recipe::qlora && !qat_inputs) return true;
    for (const char* n : names)
      if (targets.count(n)) return true;
    return false;
  };
  int64_t per_token_values =
      2 * c.hidden_size + 2 * c.num_attention_heads * d + 2 * c.num_key_value_heads * d + 2 * c.intermediate_size;
  if (targeted({"q_proj", "k_proj", "v_proj"})) per_token_values += c.hidden_size;  // normed input of q, k, v
  if (targeted({"gate_proj", "up_proj"})) per_token_values += c.hidden_size;        // normed input of the MLP
  if (targeted({"down_proj"})) per_token_values += c.intermediate_size;             // the SwiGLU product
  int64_t per_token = per_token_values * a + 4 * c.num_attention_heads;
  // QAT: each fake-quantized linear keeps the fake-quantized weight it multiplied by (whole, also under FSDP)
  // and, for a trained weight, the 1-byte mask of its straight-through gradient; with quantized inputs also
  // its own quantized input and that input's mask.
  int64_t per_layer = 0;
  if (qat) {
    for (const Projection& p : projections_of(c)) {
      per_layer += p.out * p.in * (a + (adapters ? 0 : 1));
      if (qat_inputs) per_token += p.in * (a + 1);
    }
  }
  if (adapters) {
    for (const std::string& t : in.lora_targets) {
      const int64_t width = t == "o_proj"      ? c.num_attention_heads * d
                            : t == "down_proj" ? c.intermediate_size
                                               : c.hidden_size;
      per_token += in.lora_rank * a + (in.lora_dropout > 0 ? width * a : 0);
    }
  }
  const int64_t layer_activations = tokens * per_token + per_layer;
  const int64_t saved = in.activation_checkpointing ? layers * tokens * c.hidden_size * a + layer_activations
                                                    : layers * layer_activations;
  // The head: the final norm's input and output, the logits and, in backward, their gradient.
  const int64_t head = 2 * c.hidden_size * a + 2 * c.vocab_size * a;
  const int64_t activations = saved + tokens * head;
  add("activations", activations,
      fmt::format("{} tokens x {} layers{}, and the logits{}", tokens, layers,
                  in.activation_checkpointing ? " (checkpointed: layer inputs + one layer)" : "",
                  qat ? fmt::format("; {} of fake-quantized weights per layer", format_bytes(per_layer)) : ""));
  // Backward frees activations as it makes gradients: the peak holds the larger of the two.
  add("gradients", grads,
      in.ranks == 1 ? "the trainable tensors, whole"
                    : (in.offload ? "the root's, whole" : "the rank's pieces, and the root's whole"));

  int64_t total = 0;
  for (const PlanItem& item : plan.items) {
    if (item.host) {
      plan.host += item.bytes;
    } else if (item.what != "activations" && item.what != "gradients") {
      total += static_cast<int64_t>(item.bytes);
    }
  }
  plan.total = static_cast<uint64_t>(total + std::max(activations, grads));
  return plan;
}

std::string format_plan(const PlanInput& in, const MemoryPlan& plan) {
  std::string out = fmt::format(
      "{}{} of a {}-layer Llama (hidden {}, {} parameters), {}, {} rank{}, {} x {} tokens per rank:\n",
      recipe_name(in.recipe), fake_quantizes(in.recipe) ? " (" + quant::scheme_name(in.qat_scheme) + ")" : "",
      in.model.num_hidden_layers, in.model.hidden_size, fmt::format("{:.2f}B", in.model.parameter_count() / 1e9),
      dtype_name(in.dtype), in.ranks, in.ranks == 1 ? "" : "s", in.batch, in.seq);
  for (const PlanItem& item : plan.items)
    if (!item.host) out += fmt::format("  {:<22} {:>10}  {}\n", item.what, format_bytes(item.bytes), item.detail);
  out += fmt::format(
      "  {:<22} {:>10}  per rank, {} bytes (counting the larger of activations and gradients: "
      "backward turns one into the other)\n",
      "peak", format_bytes(plan.total), plan.total);
  if (in.offload) {
    out += "offloaded to host memory (dist.offload):\n";
    for (const PlanItem& item : plan.items)
      if (item.host) out += fmt::format("  {:<22} {:>10}  {}\n", item.what, format_bytes(item.bytes), item.detail);
    out += fmt::format("  {:<22} {:>10}  per rank, {} bytes\n", "host", format_bytes(plan.host), plan.host);
  }
  return out;
}

}  // namespace qtune::recipes
