// Quantized checkpoints (models/quantized_checkpoint.h, docs/quantized-format.md) and the whole-model pass
// (models/quantize_model.h): every scheme saved and loaded again gives the in-memory quantized model's
// logits bit for bit; broken checkpoints and layers that cannot take a scheme fail naming the rule.
#include <doctest/doctest.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/autograd.h"
#include "engine/io/checkpoint_files.h"
#include "models/hf_checkpoint.h"
#include "models/llama.h"
#include "models/quantize_model.h"
#include "models/quantized_checkpoint.h"
#include "ops/nn/linear.h"
#include "quant/frozen_nf4_linear.h"
#include "quant/int4_weight_only_linear.h"
#include "quant/int8_dyn_act_int4_weight_linear.h"
#include "quant/quantized_embedding.h"
#include "tests/scratch_files.h"

using namespace qtune;
using testing::error_of;

namespace {

// Dimensions every scheme's group (32) divides, with GQA.
models::LlamaConfig quant_config(bool tied = false) {
  models::LlamaConfig c;
  c.vocab_size = 61;
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 16;
  c.max_position_embeddings = 64;
  c.tie_word_embeddings = tied;
  return c;
}

std::shared_ptr<models::Llama> random_llama(bool tied = false) {
  models::LlamaOptions o;
  o.seed = 7;
  return std::make_shared<models::Llama>(quant_config(tied), o);
}

Tensor tokens() { return Tensor::from_vector<int64_t>({1, 5, 9, 60, 3, 3, 17, 42, 0, 11}, {2, 5}); }

std::vector<float> logits(models::Llama& model) {
  NoGradGuard no_grad;
  return model.forward(tokens()).to_vector<float>();
}

quant::ModelQuantization scheme(const char* name, bool embedding_and_head) {
  const bool grouped = std::string(name) == "8da4w" || std::string(name) == "int4wo";
  quant::ModelQuantization q{quant::parse_weight_scheme(name, grouped ? std::optional<int64_t>(32) : std::nullopt)};
  if (embedding_and_head) {
    q.embedding = quant::EmbeddingInt4{32};
    q.head = true;
  }
  return q;
}

// A quantized checkpoint of the 8da4w model in `dir`.
void write_8da4w(const std::string& dir) {
  auto model = random_llama();
  const auto q = scheme("8da4w", false);
  models::quantize_llama(*model, q);
  models::save_quantized_llama(*model, q, dir);
}

// Rewrites model.safetensors of `dir` through `edit` (the list of tensors, in order).
template <class Edit>
void edit_tensors(const std::string& dir, Edit edit) {
  std::vector<std::pair<std::string, Tensor>> tensors;
  {
    const io::CheckpointFiles files = io::CheckpointFiles::open(dir);
    for (const std::string& name : files.names()) tensors.emplace_back(name, files.tensor(name).clone());
  }
  edit(tensors);
  io::save_checkpoint_files(dir, tensors);
}

void edit_config(const std::string& dir, const std::function<void(nlohmann::json&)>& edit) {
  const std::string path = dir + "/config.json";
  auto j = nlohmann::json::parse(testing::read_bytes(path));
  edit(j["quantization_config"]);
  testing::write_bytes(path, j.dump());
}

}  // namespace

TEST_CASE("every scheme: a saved and loaded quantized model gives the in-memory model's logits bit for bit") {
  for (const char* name : {"8da4w", "int4wo", "nf4", "q4_0", "q8_0"}) {
    for (const bool embedding_and_head : {false, true}) {
      CAPTURE(name);
      CAPTURE(embedding_and_head);
      auto model = random_llama();
      const std::vector<float> dense = logits(*model);
      const auto q = scheme(name, embedding_and_head);
      // 7 projections per layer, and the embedding and head when asked.
      CHECK(models::quantize_llama(*model, q) == 14 + (embedding_and_head ? 2 : 0));
      const std::vector<float> expected = logits(*model);
      CHECK(expected != dense);  // the quantization changed the model

      testing::ScratchDir dir(std::string("qckpt_") + name);
      models::save_quantized_llama(*model, q, dir.path.string());
      auto loaded = models::load_model(dir.path.string());
      for (const char* fqn : {"model.layers.1.mlp.down_proj", "lm_head"})
        CHECK(loaded->find_module(fqn)->type_name() == model->find_module(fqn)->type_name());
      if (embedding_and_head)
        CHECK(dynamic_cast<quant::QuantizedEmbedding*>(loaded->find_module("model.embed_tokens")) != nullptr);
      CHECK(logits(*loaded) == expected);
      const auto back = models::read_quantization_config(dir.path.string());
      REQUIRE(back.has_value());
      CHECK(quant::weight_scheme_name(back->scheme) == name);
      CHECK(back->head == embedding_and_head);
      CHECK(back->embedding.has_value() == embedding_and_head);
    }
  }
}

TEST_CASE("q4_0 / q8_0: the stored blocks give back the dequantized weights exactly") {
  for (const char* name : {"q4_0", "q8_0"}) {
    CAPTURE(name);
    auto model = random_llama();
    const auto q = scheme(name, false);
    models::quantize_llama(*model, q);
    testing::ScratchDir dir(std::string("qblocks_") + name);
    models::save_quantized_llama(*model, q, dir.path.string());
    const io::CheckpointFiles files = io::CheckpointFiles::open(dir.path.string());
    const std::string fqn = "model.layers.0.mlp.down_proj";
    CHECK(files.tensor(fqn + ".weight_d").dtype() == DType::f16);
    CHECK(files.tensor(fqn + ".weight_d").shape() == Shape{64, 3});
    CHECK(files.contains(fqn + (std::string(name) == "q4_0" ? ".weight_q4_0" : ".weight_q8_0")));
    auto loaded = models::load_quantized_llama(dir.path.string());
    auto& a = dynamic_cast<nn::Linear&>(*model->find_module(fqn));
    auto& b = dynamic_cast<nn::Linear&>(*loaded->find_module(fqn));
    CHECK(a.weight().to_vector<float>() == b.weight().to_vector<float>());
  }
}

TEST_CASE("load_model: a plain checkpoint loads as the dense model") {
  auto model = random_llama();
  testing::ScratchDir dir("qckpt_plain");
  models::save_llama(*model, dir.path.string());
  CHECK_FALSE(models::read_quantization_config(dir.path.string()).has_value());
  auto loaded = models::load_model(dir.path.string());
  CHECK(dynamic_cast<nn::Linear*>(loaded->find_module("model.layers.0.self_attn.q_proj")) != nullptr);
  CHECK(logits(*loaded) == logits(*model));
  CHECK(error_of([&] { models::load_quantized_llama(dir.path.string()); }).find("has no quantization_config") !=
        std::string::npos);
}

TEST_CASE("quantize_llama: a layer that cannot take the scheme leaves the model unchanged") {
  auto model = random_llama();
  const std::vector<float> before = logits(*model);
  // group 64 divides hidden (64) but not intermediate (96): down_proj is named, nothing is swapped.
  const quant::ModelQuantization q{quant::parse_weight_scheme("8da4w", 64)};
  const std::string err = error_of([&] { models::quantize_llama(*model, q); });
  CHECK(err.find("model.layers.0.mlp.down_proj") != std::string::npos);
  CHECK(err.find("does not divide") != std::string::npos);
  CHECK(dynamic_cast<nn::Linear*>(model->find_module("model.layers.0.self_attn.q_proj")) != nullptr);
  CHECK(logits(*model) == before);

  auto tied = random_llama(true);
  quant::ModelQuantization head{quant::Q8_0{}};
  head.head = true;
  CHECK(error_of([&] { models::quantize_llama(*tied, head); }).find("leave out --include-head") != std::string::npos);
  quant::ModelQuantization embedding{quant::Q8_0{}, quant::EmbeddingInt4{32}};
  CHECK(error_of([&] { models::quantize_llama(*tied, embedding); }).find("needs an untied model") != std::string::npos);
  CHECK(dynamic_cast<nn::Linear*>(tied->find_module("model.layers.0.self_attn.q_proj")) != nullptr);
}

TEST_CASE("save_quantized_llama refuses a model that does not hold the scheme's modules") {
  auto model = random_llama();
  testing::ScratchDir dir("qckpt_unquantized");
  for (const char* name : {"8da4w", "q4_0"}) {
    CAPTURE(name);
    const std::string err =
        error_of([&] { models::save_quantized_llama(*model, scheme(name, false), dir.path.string()); });
    CHECK(err.find("layer model.layers.0.self_attn.q_proj") != std::string::npos);
    CHECK(err.find("quantize") != std::string::npos);
  }
  CHECK_FALSE(std::filesystem::exists(dir.file("config.json")));

  // fp8 weights are LoRA's frozen training base: quantize_llama builds them, no checkpoint holds them.
  const quant::ModelQuantization fp8{quant::Float8Weights{}};
  CHECK(models::quantize_llama(*model, fp8) == 14);
  CHECK(error_of([&] {
          models::save_quantized_llama(*model, fp8, dir.path.string());
        }).find("fp8 is a training-time base for LoRA") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(dir.file("config.json")));
}

TEST_CASE("broken quantized checkpoints fail naming the file, the tensor, the layer and the rule") {
  testing::ScratchDir dir("qckpt_broken");
  const std::string d = dir.path.string();
  const std::string scales = "model.layers.0.self_attn.q_proj.weight_scales";

  SUBCASE("missing scales") {
    write_8da4w(d);
    edit_tensors(d, [&](auto& t) { std::erase_if(t, [&](const auto& p) { return p.first == scales; }); });
    const std::string err = error_of([&] { models::load_model(d); });
    CHECK(err.find(d + ": the quantized checkpoint does not match") != std::string::npos);
    CHECK(err.find("layer model.layers.0.self_attn.q_proj: missing tensor " + scales +
                   " (f32 [64, 2], one scale per group)") != std::string::npos);
  }
  SUBCASE("mis-shaped scales") {
    write_8da4w(d);
    edit_tensors(d, [&](auto& t) {
      for (auto& [name, v] : t)
        if (name == scales) v = Tensor::ones({64, 1});
    });
    const std::string err = error_of([&] { models::load_model(d); });
    CHECK(err.find("tensor " + scales + " in " + d + "/model.safetensors is F32 [64, 1], expected f32 [64, 2]") !=
          std::string::npos);
  }
  SUBCASE("codes of the wrong dtype, and an unexpected tensor") {
    write_8da4w(d);
    edit_tensors(d, [&](auto& t) {
      for (auto& [name, v] : t)
        if (name == "model.layers.1.mlp.up_proj.weight_int4") v = v.to(DType::i32);
      t.emplace_back("model.layers.0.self_attn.q_proj.weight_zeros", Tensor::zeros({64, 2}));
    });
    const std::string err = error_of([&] { models::load_model(d); });
    CHECK(err.find("model.layers.1.mlp.up_proj.weight_int4 in") != std::string::npos);
    CHECK(err.find("is I32 [96, 32], expected u8 [96, 32]") != std::string::npos);
    CHECK(err.find("unexpected tensor model.layers.0.self_attn.q_proj.weight_zeros [64, 2]") != std::string::npos);
  }
  SUBCASE("unknown scheme") {
    write_8da4w(d);
    edit_config(d, [](auto& q) { q["scheme"] = "int3"; });
    const std::string err = error_of([&] { models::load_model(d); });
    CHECK(err.find("quantization_config.scheme in " + d + "/config.json: unknown quantization scheme 'int3'") !=
          std::string::npos);
  }
  SUBCASE("unknown format version") {
    write_8da4w(d);
    edit_config(d, [](auto& q) { q["format_version"] = 2; });
    CHECK(error_of([&] { models::load_model(d); })
              .find("quantization_config.format_version in " + d +
                    "/config.json is 2; this qtune reads format version 1") != std::string::npos);
  }
  SUBCASE("a group size that does not divide in_features") {
    write_8da4w(d);
    edit_config(d, [](auto& q) { q["group_size"] = 64; });
    const std::string err = error_of([&] { models::load_model(d); });
    CHECK(err.find("layer 'model.layers.0.mlp.down_proj' has in_features = 96, which group size 64 does not divide") !=
          std::string::npos);
  }
  SUBCASE("a fixed-block scheme with another group size") {
    auto model = random_llama();
    models::quantize_llama(*model, scheme("q8_0", false));
    models::save_quantized_llama(*model, scheme("q8_0", false), d);
    edit_config(d, [](auto& q) { q["group_size"] = 64; });
    CHECK(error_of([&] { models::load_model(d); })
              .find("quantization_config.group_size in " + d +
                    "/config.json is 64 but scheme q8_0 has fixed blocks of 32") != std::string::npos);
  }
}

TEST_CASE("quantized_part: the modules a whole-model quantization touches") {
  using models::QuantizedPart;
  const quant::ModelQuantization plain{quant::NF4{}};
  const quant::ModelQuantization all{quant::Q8_0{}, quant::EmbeddingInt4{32}, true};
  for (const char* projection :
       {"model.layers.0.self_attn.q_proj", "model.layers.3.self_attn.k_proj", "model.layers.1.self_attn.v_proj",
        "model.layers.1.self_attn.o_proj", "model.layers.11.mlp.gate_proj", "model.layers.0.mlp.up_proj",
        "model.layers.0.mlp.down_proj"}) {
    CAPTURE(projection);
    CHECK(models::quantized_part(plain, projection) == QuantizedPart::linear);
    CHECK(models::quantized_part(all, projection) == QuantizedPart::linear);
  }
  CHECK(models::quantized_part(plain, "lm_head") == QuantizedPart::none);
  CHECK(models::quantized_part(all, "lm_head") == QuantizedPart::linear);
  CHECK(models::quantized_part(plain, "model.embed_tokens") == QuantizedPart::none);
  CHECK(models::quantized_part(all, "model.embed_tokens") == QuantizedPart::embedding);
  for (const char* other : {"model.norm", "model.layers.0.input_layernorm", "model.layers.0.self_attn",
                            "model.layers.0.mlp", "q_proj", "model.layers.0.self_attn.q_proj.lora_a"}) {
    CAPTURE(other);
    CHECK(models::quantized_part(all, other) == QuantizedPart::none);
  }
}
