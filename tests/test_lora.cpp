// LoRALinear against torch (tools/goldens/gen_lora.py), the LoRA pass over a Llama, training only the
// adapters, merging (f32, NF4 and QAT bases) and the pass's error cases.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <memory>

#include "engine/autograd.h"
#include "engine/check.h"
#include "models/hf_checkpoint.h"
#include "models/llama.h"
#include "models/lora.h"
#include "models/lora_linear.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"
#include "ops/nn/linear.h"
#include "optim/adamw.h"
#include "quant/fake_quantized_linear.h"
#include "quant/float8.h"
#include "quant/float8_linear.h"
#include "quant/frozen_nf4_linear.h"
#include "quant/qat.h"
#include "tests/llama_fixtures.h"
#include "tests/testing.h"

using namespace qtune;
using models::LoraConfig;
using models::LoRALinear;

namespace {

std::shared_ptr<nn::Linear> make_linear(int64_t in, int64_t out, uint64_t seed) {
  Generator gen(seed);
  return std::make_shared<nn::Linear>(in, out, nn::Linear::Options{.generator = &gen});
}

void fill(Tensor& t, uint64_t seed, double bound) {
  NoGradGuard no_grad;
  t.copy_(testing::random_f64(t.shape(), seed, -bound, bound));
}

const std::vector<std::string> kAllTargets = {"q_proj",    "k_proj",  "v_proj",    "o_proj",
                                              "gate_proj", "up_proj", "down_proj", "lm_head"};

}  // namespace

TEST_CASE("LoRALinear forward and backward match torch") {
  auto golden = testing::load_golden("lora/linear.json").at("linear");
  auto base = make_linear(12, 10, 1);
  LoRALinear lora(base, 12, 10, {.rank = 4, .alpha = golden.at("alpha").to_vector<double>()[0]});
  {
    NoGradGuard setup;
    base->weight().copy_(golden.at("weight"));
    base->bias().copy_(golden.at("bias"));
    lora.lora_a().copy_(golden.at("lora_a"));
    lora.lora_b().copy_(golden.at("lora_b"));
  }
  Tensor x = golden.at("x").to(DType::f32);
  x.requires_grad_(true);
  const Tensor y = lora.forward(x);
  QTUNE_CHECK_CLOSE(y, golden.at("y"), 1e-5, 1e-5);
  y.backward(golden.at("grad_y").to(DType::f32));
  QTUNE_CHECK_CLOSE(x.grad(), golden.at("grad_x"), 1e-5, 1e-5);
  QTUNE_CHECK_CLOSE(lora.lora_a().grad(), golden.at("grad_lora_a"), 1e-5, 1e-5);
  QTUNE_CHECK_CLOSE(lora.lora_b().grad(), golden.at("grad_lora_b"), 1e-5, 1e-5);
}

TEST_CASE("LoRALinear keeps the base's parameter names and starts as the base") {
  auto base = make_linear(6, 5, 2);
  Generator gen(3);
  LoRALinear lora(base, 6, 5, {.rank = 2, .alpha = 4, .init_generator = &gen});
  std::vector<std::string> names;
  for (const auto& [name, t] : lora.named_parameters()) names.push_back(name);
  CHECK(names == std::vector<std::string>{"weight", "bias", "lora_A.weight", "lora_B.weight"});
  CHECK(lora.named_parameters()[0].second.is_same(base->weight()));
  CHECK(lora.lora_a().shape() == Shape{2, 6});
  CHECK(lora.lora_b().shape() == Shape{5, 2});
  // kaiming-uniform with bound 1/sqrt(in), B = 0
  const auto a = lora.lora_a().to_vector<double>();
  CHECK(*std::max_element(a.begin(), a.end()) <= 1.0 / std::sqrt(6.0));
  CHECK(*std::min_element(a.begin(), a.end()) >= -1.0 / std::sqrt(6.0));
  CHECK(*std::max_element(a.begin(), a.end()) > 0.0);
  CHECK(lora.scaling() == 2.0);
  const Tensor x = testing::random_f64({3, 6}, 4).to(DType::f32);
  CHECK(testing::relative_error(lora.forward(x), base->forward(x)) == 0.0);
}

TEST_CASE("dropout acts only in training mode and only on the LoRA branch") {
  auto base = make_linear(16, 8, 5);
  LoRALinear lora(base, 16, 8, {.rank = 4, .alpha = 8, .dropout = 0.5});
  const Tensor x = testing::random_f64({4, 16}, 6).to(DType::f32);
  NoGradGuard no_grad;
  const Tensor base_y = base->forward(x);

  // B = 0: the LoRA branch is zero, so any difference would be dropout reaching the base.
  lora.train();
  CHECK(testing::relative_error(lora.forward(x), base_y) == 0.0);

  fill(lora.lora_b(), 7, 0.5);
  const Tensor expected_eval = ops::add(
      base_y,
      ops::scale(ops::matmul(ops::matmul(x, lora.lora_a(), false, true), lora.lora_b(), false, true), lora.scaling()));
  lora.eval();
  CHECK(testing::relative_error(lora.forward(x), expected_eval) < 1e-6);
  lora.train();
  const Tensor train1 = lora.forward(x), train2 = lora.forward(x);
  CHECK(testing::relative_error(train1, expected_eval) > 1e-2);
  CHECK(testing::relative_error(train1, train2) > 1e-2);  // a new mask each call
}

TEST_CASE("LoRA dropout draws the same masks when activation checkpointing recomputes a layer") {
  std::vector<std::vector<double>> grads;
  for (bool checkpointing : {false, true}) {
    models::Llama model(testing::tiny_llama_config(), {.activation_checkpointing = checkpointing});
    models::apply_lora(model, {.rank = 4, .alpha = 8, .dropout = 0.3, .targets = kAllTargets});
    uint64_t seed = 20;
    for (Tensor& t : models::lora_parameters(model)) fill(t, seed++, 0.3);
    manual_seed(99);
    model.loss(testing::fixed_tokens(), testing::fixed_tokens()).backward();
    std::vector<double> g;
    for (Tensor& t : models::lora_parameters(model)) {
      const auto v = t.grad().to_vector<double>();
      g.insert(g.end(), v.begin(), v.end());
    }
    grads.push_back(g);
  }
  REQUIRE(grads[0].size() == grads[1].size());
  double worst = 0;
  for (size_t i = 0; i < grads[0].size(); ++i) worst = std::max(worst, std::fabs(grads[0][i] - grads[1][i]));
  CHECK(worst < 1e-6);
}

TEST_CASE("LoRA over a float8 base trains only the adapters") {
  models::Llama model(testing::aligned_llama_config());
  quant::convert_to_float8(model, quant::Float8LinearConfig::from_recipe(quant::Float8Recipe::tensorwise),
                           [](const Module&, std::string_view fqn) { return fqn != "lm_head"; });
  CHECK(models::apply_lora(model, {.rank = 4, .alpha = 8, .targets = {"q_proj", "down_proj"}}) == 4);
  auto* lora = dynamic_cast<LoRALinear*>(model.find_module("model.layers.0.mlp.down_proj"));
  REQUIRE(lora != nullptr);
  CHECK(dynamic_cast<quant::Float8Linear*>(&lora->base()) != nullptr);
  model.loss(testing::fixed_tokens(), testing::fixed_tokens()).backward();
  CHECK(model.trainable_parameters().size() == 8);
  CHECK(lora->lora_a().grad().defined());
  CHECK(!lora->named_parameters()[0].second.grad().defined());  // the fp8 base weight stays frozen
}

TEST_CASE("QAT+LoRA: the LoRA branch sees the un-quantized input") {
  auto linear = make_linear(32, 8, 8);
  auto fq = std::make_shared<quant::FakeQuantizedLinear>(*linear, quant::Int8DynActInt4Weight{32});
  LoRALinear lora(fq, 32, 8, {.rank = 4, .alpha = 4});
  fill(lora.lora_b(), 9, 0.5);
  const Tensor x = testing::random_f64({3, 32}, 10).to(DType::f32);
  NoGradGuard no_grad;
  const Tensor branch = ops::matmul(ops::matmul(x, lora.lora_a(), false, true), lora.lora_b(), false, true);
  const Tensor expected = ops::add(fq->forward(x), branch);  // scaling 1
  CHECK(testing::relative_error(lora.forward(x), expected) < 1e-6);
  CHECK(testing::relative_error(fq->forward(x), linear->forward(x)) > 1e-3);  // the base does fake-quantize
}

TEST_CASE("apply_lora wraps the targets, freezes the rest and keeps the logits") {
  models::Llama model(testing::tiny_llama_config());
  const Tensor before = testing::eval_logits(model);
  const auto names_before = model.state_dict();
  CHECK(models::apply_lora(model, {.rank = 4, .alpha = 8, .targets = {"q_proj", "v_proj", "lm_head"}}) == 5);

  CHECK(dynamic_cast<LoRALinear*>(model.find_module("model.layers.1.self_attn.v_proj")) != nullptr);
  CHECK(dynamic_cast<LoRALinear*>(model.find_module("model.layers.1.self_attn.k_proj")) == nullptr);
  CHECK(dynamic_cast<LoRALinear*>(model.find_module("lm_head")) != nullptr);
  const auto after = model.state_dict();
  for (const auto& [name, t] : names_before) CHECK_MESSAGE(after.count(name), name);  // HF names unchanged
  CHECK(after.count("model.layers.0.self_attn.q_proj.lora_A.weight"));
  CHECK(after.count("lm_head.lora_B.weight"));
  CHECK(after.size() == names_before.size() + 10);

  const auto trainable = model.trainable_parameters();
  const auto adapters = models::lora_parameters(model);
  REQUIRE(trainable.size() == 10);
  for (size_t i = 0; i < trainable.size(); ++i) CHECK(trainable[i].is_same(adapters[i]));
  CHECK(testing::relative_error(testing::eval_logits(model), before) == 0.0);
}

TEST_CASE("training moves only the adapters and lowers the loss") {
  models::Llama model(testing::tiny_llama_config());
  models::apply_lora(model, {.rank = 4, .alpha = 8, .targets = kAllTargets, .seed = 3});
  std::map<std::string, Tensor> frozen;
  for (const auto& [name, t] : model.named_parameters())
    if (name.find("lora_") == std::string::npos) frozen[name] = t.detach().clone();
  optim::AdamW opt(models::lora_parameters(model), {.lr = 1e-2, .weight_decay = 0.0});
  const Tensor x = testing::fixed_tokens();
  const Tensor targets =
      Tensor::from_vector(std::vector<int64_t>{5, 9, 33, 2, 17, 60, 4, 41, 12, 3, 7, 19, 8, 8}, {2, 7});
  double first = 0, last = 0;
  for (int step = 0; step < 8; ++step) {
    opt.zero_grad();
    const Tensor loss = model.loss(x, targets);
    loss.backward();
    for (const auto& [name, t] : model.named_parameters())
      if (frozen.count(name)) CHECK_MESSAGE(!t.grad().defined(), name, " got a gradient");
    opt.step();
    (step == 0 ? first : last) = loss.to_vector<double>()[0];
  }
  CHECK(last < first - 0.05);
  for (const auto& [name, t] : model.named_parameters())
    if (frozen.count(name)) CHECK_MESSAGE(testing::relative_error(t, frozen[name]) == 0.0, name, " changed");
}

TEST_CASE("merge_lora reproduces the LoRA model's logits") {
  struct Base {
    std::string name;
    std::function<void(models::Llama&)> prepare;
    double tolerance;
    DType dtype = DType::f32;
  };
  const auto decoder_only = [](const Module&, std::string_view fqn) { return fqn != "lm_head"; };
  const std::vector<Base> bases = {
      {"f32", [](models::Llama&) {}, 1e-5},
      {"nf4", [&](models::Llama& m) { quant::convert_to_nf4(m, decoder_only); }, 1e-5},
      // The merged linear is a plain one: compare with fake quantization off (QAT+LoRA trains through it,
      // the export holds the float weights).
      {"qat", [](models::Llama& m) { quant::quantize_(m, quant::QATConfig{quant::Int8DynActInt4Weight{32}}); }, 1e-5},
      // bf16: the merged weight is rounded once to bf16 while the LoRA model rounds the base output and the
      // update apart; a few bf16 ulps (2^-8) per projection compound over the layers (measured 1.3e-2 and
      // 2.8e-2).
      {"bf16", [](models::Llama&) {}, 5e-2, DType::bf16},
      {"nf4 bf16", [&](models::Llama& m) { quant::convert_to_nf4(m, decoder_only); }, 5e-2, DType::bf16},
  };
  for (const Base& base : bases) {
    CAPTURE(base.name);
    models::Llama model(testing::aligned_llama_config(), {.dtype = base.dtype});
    base.prepare(model);
    const Tensor base_logits = testing::eval_logits(model);
    models::apply_lora(model, {.rank = 4, .alpha = 8, .targets = kAllTargets});
    uint64_t seed = 10;
    for (Tensor& t : models::lora_parameters(model)) fill(t, seed++, 0.3);
    // The wrapped bases are not children of the LoRALinear (their tensors keep their HF names), so quant's
    // walks reach them through each LoRALinear's base().
    for (const auto& [fqn, lora] : models::lora_modules(model)) quant::set_fake_quant_enabled(lora->base(), false);
    const Tensor lora_logits = testing::eval_logits(model);
    CHECK(testing::relative_error(base_logits, lora_logits) > 4 * base.tolerance);  // the adapters matter
    CHECK(models::merge_lora(model) == 15);
    CHECK(models::lora_modules(model).empty());
    CHECK(dynamic_cast<nn::Linear*>(model.find_module("model.layers.0.mlp.down_proj")) != nullptr);
    CHECK(model.trainable_parameters().empty());
    const Tensor merged_logits = testing::eval_logits(model);
    CHECK(merged_logits.dtype() == base.dtype);
    CHECK(model.find_module("model.layers.0.mlp.down_proj")->named_parameters()[0].second.dtype() == base.dtype);
    const double error = testing::relative_error(merged_logits, lora_logits);
    MESSAGE(base.name, ": merged vs LoRA logits, relative error ", error);
    CHECK(error < base.tolerance);
  }
}

TEST_CASE("a merged model saves as a standard HF checkpoint") {
  testing::ScratchDir dir("lora_merged");
  models::Llama model(testing::tiny_llama_config());
  models::apply_lora(model, {.rank = 2, .alpha = 4});
  for (Tensor& t : models::lora_parameters(model)) fill(t, 1, 0.3);
  const Tensor lora_logits = testing::eval_logits(model);
  models::merge_lora(model);
  models::save_llama(model, dir.str());
  auto reloaded = models::load_llama(dir.str());
  CHECK(testing::relative_error(testing::eval_logits(*reloaded), lora_logits) < 1e-5);
}

TEST_CASE("apply_lora rejects bad targets and a second pass") {
  models::Llama model(testing::tiny_llama_config());
  CHECK_THROWS_WITH_AS(models::apply_lora(model, {.targets = {"q_proj", "embed_tokens"}}),
                       doctest::Contains("unknown target module 'embed_tokens' (valid: q_proj, k_proj, v_proj, "
                                         "o_proj, gate_proj, up_proj, down_proj, lm_head)"),
                       Error);
  CHECK_THROWS_WITH_AS(models::apply_lora(model, {.targets = {"q_proj", "q_proj"}}), doctest::Contains("twice"), Error);
  CHECK_THROWS_WITH_AS(models::apply_lora(model, {.rank = 0}), doctest::Contains("rank must be positive"), Error);
  CHECK(models::lora_modules(model).empty());  // a failed pass leaves the model as it was
  CHECK(dynamic_cast<nn::Linear*>(model.find_module("model.layers.0.self_attn.q_proj")) != nullptr);
  CHECK_THROWS_WITH_AS(models::apply_lora(model, {.dropout = 1.0}), doctest::Contains("dropout"), Error);

  models::apply_lora(model, {});
  CHECK_THROWS_WITH_AS(models::apply_lora(model, {}), doctest::Contains("already has LoRA modules"), Error);

  models::Llama tied(testing::tiny_llama_config(true));
  CHECK_THROWS_WITH_AS(models::apply_lora(tied, {.targets = {"lm_head"}}), doctest::Contains("tie_word_embeddings"),
                       Error);
}
