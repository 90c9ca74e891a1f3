// The quantizing loader (models/quantizing_loader.h): for every scheme, tied and untied models and bf16 and
// f32 checkpoints, the model it builds computes bit for bit what load_llama followed by quantize_linear of
// each projection computes; bad checkpoints and schemes that do not fit fail naming the tensor or layer
// before any weight is read.
#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/autograd.h"
#include "engine/io/checkpoint_files.h"
#include "engine/io/safetensors.h"
#include "models/hf_checkpoint.h"
#include "models/pending_linear.h"
#include "models/quantizing_loader.h"
#include "quant/quantized_embedding.h"
#include "tests/llama_fixtures.h"

using namespace qtune;
using namespace qtune::models;

namespace {

// Every in_features (64 hidden, 64 attention output, 96 intermediate) takes groups of 32.
LlamaConfig loader_config(bool tied) {
  LlamaConfig c = testing::tiny_llama_config(tied);
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.head_dim = 16;
  return c;
}

void write_checkpoint(const std::string& dir, bool tied, DType file_dtype) {
  LlamaOptions options;
  options.seed = 7;
  Llama model(loader_config(tied), options);
  save_llama(model, dir, {.dtype = file_dtype});
}

std::vector<quant::WeightScheme> all_schemes() {
  return {quant::parse_weight_scheme("8da4w"),
          quant::parse_weight_scheme("int4wo", 32),
          quant::parse_weight_scheme("nf4"),
          quant::parse_weight_scheme("q4_0"),
          quant::parse_weight_scheme("q8_0"),
          quant::Float8Weights{quant::Float8LinearConfig::from_recipe(quant::Float8Recipe::rowwise)}};
}

// load_llama, then each quantized module built from the loaded dense weight: what the loader must equal.
std::shared_ptr<Llama> reference(const std::string& dir, const quant::ModelQuantization& q, DType dtype) {
  auto model = load_llama(dir, {.dtype = dtype});
  std::vector<std::pair<std::string, Tensor>> dense;
  for (const auto& [fqn, module] : model->named_modules()) {
    const bool projection = fqn.find("_proj") != std::string::npos || (fqn == "lm_head" && q.head);
    if (projection) dense.emplace_back(fqn, *module->find_parameter("weight"));
  }
  for (const auto& [fqn, weight] : dense)
    model->replace_module(fqn, quant::quantize_linear(weight, Tensor(), q.scheme, fqn));
  if (q.embedding) {
    const Tensor table = *model->find_parameter("model.embed_tokens.weight");
    model->replace_module("model.embed_tokens", std::make_shared<quant::QuantizedEmbedding>(table, *q.embedding));
  }
  return model;
}

Tensor logits(Llama& model) {
  NoGradGuard no_grad;
  const Tensor tokens = Tensor::from_vector<int64_t>({3, 17, 42, 5, 60, 0, 9, 33}, {2, 4});
  return model.forward(tokens);
}

int64_t pending_slots(Llama& model) {
  int64_t n = 0;
  for (const auto& [fqn, module] : model.named_modules()) n += dynamic_cast<PendingLinear*>(module) != nullptr;
  return n;
}

}  // namespace

TEST_CASE("load_llama_quantized equals load_llama + quantize_linear bit for bit, every scheme") {
  struct Case {
    DType file, compute;
  };
  for (const bool tied : {true, false}) {
    for (const Case c : {Case{DType::bf16, DType::bf16}, Case{DType::f32, DType::f32}, Case{DType::bf16, DType::f32}}) {
      testing::ScratchDir dir("quantizing_loader");
      write_checkpoint(dir.str(), tied, c.file);
      for (const quant::WeightScheme& scheme : all_schemes()) {
        CAPTURE(tied);
        CAPTURE(dtype_name(c.file));
        CAPTURE(dtype_name(c.compute));
        CAPTURE(quant::weight_scheme_name(scheme));
        const quant::ModelQuantization q{scheme};
        std::vector<int64_t> seen;
        auto loaded = load_llama_quantized(dir.str(), q, {.dtype = c.compute}, [&](int64_t layer, int64_t layers) {
          CHECK(layers == 2);
          seen.push_back(layer);
        });
        CHECK(seen == std::vector<int64_t>{1, 2});
        CHECK(pending_slots(*loaded) == 0);
        const Tensor got = logits(*loaded), want = logits(*reference(dir.str(), q, c.compute));
        CHECK(got.dtype() == c.compute);
        CHECK(got.to_vector<double>() == want.to_vector<double>());
      }
    }
  }
}

TEST_CASE("load_llama_quantized: an untied model's embedding and head are quantized from their own tensors") {
  testing::ScratchDir dir("quantizing_loader_head");
  write_checkpoint(dir.str(), false, DType::bf16);
  const quant::ModelQuantization q{quant::parse_weight_scheme("8da4w"), quant::EmbeddingInt4{32}, true};
  auto loaded = load_llama_quantized(dir.str(), q, {.dtype = DType::bf16});
  CHECK(dynamic_cast<quant::QuantizedEmbedding*>(loaded->find_module("model.embed_tokens")) != nullptr);
  CHECK(loaded->find_parameter("lm_head.weight") == nullptr);
  CHECK(logits(*loaded).to_vector<double>() == logits(*reference(dir.str(), q, DType::bf16)).to_vector<double>());

  testing::ScratchDir tied_dir("quantizing_loader_tied");
  write_checkpoint(tied_dir.str(), true, DType::bf16);
  CHECK_THROWS_WITH_AS(load_llama_quantized(tied_dir.str(), q), doctest::Contains("ties lm_head to model.embed_tokens"),
                       Error);
}

TEST_CASE("load_llama_quantized fails naming the tensor or layer before reading weights") {
  testing::ScratchDir dir("quantizing_loader_bad");
  write_checkpoint(dir.str(), false, DType::bf16);
  const std::string file = dir.str("model.safetensors");
  const quant::ModelQuantization nf4{quant::parse_weight_scheme("nf4")};
  std::vector<std::pair<std::string, Tensor>> tensors;
  {
    const io::CheckpointFiles files = io::CheckpointFiles::open(dir.str());
    for (const std::string& name : files.names()) tensors.emplace_back(name, files.tensor(name).to(DType::f32));
  }

  SUBCASE("missing projection") {
    std::erase_if(tensors, [](const auto& t) { return t.first == "model.layers.1.mlp.down_proj.weight"; });
    io::save_safetensors(file, tensors);
    CHECK_THROWS_WITH_AS(load_llama_quantized(dir.str(), nf4),
                         doctest::Contains("missing tensor model.layers.1.mlp.down_proj.weight [64, 96]"), Error);
  }
  SUBCASE("mis-shaped projection") {
    for (auto& [name, t] : tensors)
      if (name == "model.layers.0.self_attn.k_proj.weight") t = Tensor::zeros({32, 48}, DType::f32);
    io::save_safetensors(file, tensors);
    CHECK_THROWS_WITH_AS(load_llama_quantized(dir.str(), nf4),
                         doctest::Contains("tensor model.layers.0.self_attn.k_proj.weight has shape [32, 48]"), Error);
  }
  SUBCASE("a group size that does not divide the projection") {
    CHECK_THROWS_WITH_AS(load_llama_quantized(dir.str(), {quant::parse_weight_scheme("int4wo")}),
                         doctest::Contains("model.layers.0.self_attn.q_proj"), Error);
  }
}
