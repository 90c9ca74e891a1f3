// The Llama model: Hugging Face parameter names and shapes, initialization, parity of logits, loss and
// every gradient with transformers (tests/golden/llama, tools/goldens/gen_llama.py), the KV cache,
// activation checkpointing and bf16.
#include <doctest/doctest.h>

#include <cmath>
#include <set>

#include "engine/autograd.h"
#include "engine/io/safetensors.h"
#include "engine/rng.h"
#include "models/hf_checkpoint.h"
#include "models/llama.h"
#include "ops/cross_entropy.h"
#include "tests/llama_fixtures.h"
#include "tests/testing.h"

using namespace qtune;
using namespace qtune::models;
using qtune::testing::relative_error;

namespace {

Tensor random_tokens(int64_t b, int64_t t, int64_t vocab, uint64_t seed) {
  Generator gen(seed);
  const auto u = rand({b, t}, DType::f64, Device::cpu(), &gen).to_vector<double>();
  std::vector<int64_t> ids;
  for (double x : u) ids.push_back(static_cast<int64_t>(x * static_cast<double>(vocab)));
  return Tensor::from_vector(ids, {b, t});
}

bool same_values(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.to_vector<double>() == b.to_vector<double>();
}

}  // namespace

TEST_CASE("llama: Hugging Face parameter names, shapes and count") {
  for (bool tied : {false, true}) {
    CAPTURE(tied);
    const LlamaConfig c = testing::tiny_llama_config(tied);
    Llama model(c);
    std::vector<std::pair<std::string, Shape>> expected{{"model.embed_tokens.weight", {61, 24}}};
    for (int i = 0; i < 2; ++i) {
      const std::string p = "model.layers." + std::to_string(i) + ".";
      expected.insert(expected.end(), {{p + "self_attn.q_proj.weight", {32, 24}},
                                       {p + "self_attn.k_proj.weight", {16, 24}},
                                       {p + "self_attn.v_proj.weight", {16, 24}},
                                       {p + "self_attn.o_proj.weight", {24, 32}},
                                       {p + "mlp.gate_proj.weight", {37, 24}},
                                       {p + "mlp.up_proj.weight", {37, 24}},
                                       {p + "mlp.down_proj.weight", {24, 37}},
                                       {p + "input_layernorm.weight", {24}},
                                       {p + "post_attention_layernorm.weight", {24}}});
    }
    expected.push_back({"model.norm.weight", {24}});
    if (!tied) expected.push_back({"lm_head.weight", {61, 24}});

    const auto params = model.named_parameters();
    REQUIRE(params.size() == expected.size());
    int64_t total = 0;
    for (size_t i = 0; i < params.size(); ++i) {
      CHECK(params[i].first == expected[i].first);
      CHECK(params[i].second.shape() == expected[i].second);
      CHECK(params[i].second.dtype() == DType::f32);
      CHECK(params[i].second.requires_grad());
      total += params[i].second.numel();
    }
    CHECK(total == c.num_parameters());
    CHECK(model.state_dict().size() == expected.size());
    CHECK((model.lm_head == nullptr) == tied);
    CHECK(&model.lm_head_module() == (tied ? model.find_module("model.embed_tokens") : model.lm_head.get()));
    CHECK(model.find_module("model.layers.1.self_attn.k_proj") != nullptr);
  }
}

TEST_CASE("llama: initialization") {
  const LlamaConfig c = testing::tiny_llama_config();
  const uint64_t offset_before = default_generator().offset();
  Llama a(c, {.seed = 7}), b(c, {.seed = 7}), other(c, {.seed = 8});
  CHECK(default_generator().offset() == offset_before);  // the model draws from its own generator
  const auto pa = a.named_parameters(), pb = b.named_parameters(), po = other.named_parameters();
  for (size_t i = 0; i < pa.size(); ++i) {
    CAPTURE(pa[i].first);
    CHECK(same_values(pa[i].second, pb[i].second));
    const auto v = pa[i].second.to_vector<double>();
    if (pa[i].first.ends_with("norm.weight")) {
      CHECK(std::all_of(v.begin(), v.end(), [](double x) { return x == 1.0; }));
    } else {
      CHECK_FALSE(same_values(pa[i].second, po[i].second));
      double sq = 0.0;
      for (double x : v) sq += x * x;
      const double std = std::sqrt(sq / static_cast<double>(v.size()));
      CHECK(std == doctest::Approx(0.02).epsilon(0.2));
    }
  }
  // Layers get distinct weights (one generator walks the whole model).
  CHECK_FALSE(same_values(*a.find_parameter("model.layers.0.self_attn.q_proj.weight"),
                          *a.find_parameter("model.layers.1.self_attn.q_proj.weight")));
}

TEST_CASE("llama: forward shapes, dtypes and input errors") {
  Llama model(testing::tiny_llama_config());
  const Tensor tokens = random_tokens(3, 5, 61, 1);
  const Tensor logits = model.forward(tokens);
  CHECK(logits.shape() == Shape{3, 5, 61});
  CHECK(logits.dtype() == DType::f32);
  CHECK(same_values(model.forward(tokens.to(DType::i32)), logits));
  CHECK_THROWS_WITH_AS(model.forward(Tensor::zeros({5}, DType::i64)), doctest::Contains("[B, T]"), Error);
  CHECK_THROWS_WITH_AS(model.forward(Tensor::zeros({1, 5}, DType::f32)), doctest::Contains("f32"), Error);
  CHECK_THROWS_WITH_AS(model.loss(tokens, Tensor::zeros({3, 4}, DType::i64)), doctest::Contains("targets"), Error);

  LlamaConfig bad = testing::tiny_llama_config();
  bad.num_key_value_heads = 3;
  CHECK_THROWS_WITH_AS(Llama{bad}, doctest::Contains("num_key_value_heads"), Error);
}

TEST_CASE("llama: parity with transformers (logits, loss, every gradient)") {
  // Relative error of a tensor: max|ours - reference| / max|reference| (tests/llama_fixtures.h).
  for (const std::string variant : testing::kLlamaVariants) {
    CAPTURE(variant);
    const std::string dir = testing::llama_golden_dir(variant);
    auto model = load_llama(dir);
    const auto ref = io::SafetensorsFile::open(dir + "/reference.safetensors");
    const Tensor tokens = ref.tensor("tokens"), targets = ref.tensor("targets");

    const Tensor logits = model->forward(tokens);
    const Tensor loss = ops::cross_entropy(logits, targets);
    loss.backward();
    const double logits_err = relative_error(logits, ref.tensor("logits"));
    const double loss_err = relative_error(loss.reshape({1}), ref.tensor("loss"));
    CHECK(logits_err <= 1e-5);
    CHECK(loss_err <= 1e-5);
    CHECK(model->loss(tokens, targets).item() == loss.item());

    double worst = 0.0;
    std::string worst_name;
    std::set<std::string> reference_grads;
    for (const auto& e : ref.entries())
      if (e.name.starts_with("grad.")) reference_grads.insert(e.name.substr(5));
    std::set<std::string> ours;
    for (const auto& [name, p] : model->named_parameters()) {
      CAPTURE(name);
      ours.insert(name);
      REQUIRE(p.grad().defined());
      const double err = relative_error(p.grad(), ref.tensor("grad." + name));
      CHECK(err <= 1e-4);
      if (err >= worst) {
        worst = err;
        worst_name = name;
      }
    }
    CHECK(ours == reference_grads);
    MESSAGE(variant, ": relative error logits ", logits_err, ", loss ", loss_err, ", worst gradient ", worst, " (",
            worst_name, ")");
  }
}

TEST_CASE("llama: incremental decoding with a KV cache equals the full forward") {
  for (const std::string variant : {"tied_gqa_llama3", "untied_gqa_headdim"}) {
    CAPTURE(variant);
    auto model = load_llama(testing::llama_golden_dir(variant));
    const Tensor tokens = random_tokens(2, 12, model->config().vocab_size, 3);
    Tensor full;
    {
      NoGradGuard no_grad;
      full = model->forward(tokens);
    }
    KVCache cache;
    // Chunks of several sizes: the prompt, single tokens and a multi-token continuation.
    const int64_t chunks[] = {5, 1, 3, 1, 2};
    int64_t at = 0;
    double worst = 0.0;
    for (int64_t n : chunks) {
      const Tensor part = model->forward(tokens.narrow(1, at, n).contiguous(), &cache);
      CHECK_FALSE(part.requires_grad());
      at += n;
      CHECK(cache.length() == at);
      CHECK(cache.k[1].shape() ==
            Shape{2, at, model->config().num_key_value_heads, model->config().resolved_head_dim()});
      worst = std::max(worst, relative_error(part, full.narrow(1, at - n, n)));
    }
    CHECK(worst <= 1e-5);
    MESSAGE(variant, ": KV cache vs full forward relative error ", worst);
    cache.clear();
    CHECK(cache.length() == 0);
  }
}

TEST_CASE("llama: kv_cache_append grows in place and never shares a buffer between branches") {
  const Tensor x1 = testing::random_f64({1, 3, 2, 4}, 1), x2 = testing::random_f64({1, 2, 2, 4}, 2),
               x3 = testing::random_f64({1, 1, 2, 4}, 3);
  Tensor a = kv_cache_append(Tensor(), x1);
  CHECK(same_values(a, x1));
  const void* buffer = a.storage().get();
  a = kv_cache_append(std::move(a), x2);
  CHECK(a.storage().get() == buffer);  // spare room used, nothing copied
  CHECK(same_values(a.narrow(1, 0, 3), x1));
  CHECK(same_values(a.narrow(1, 3, 2), x2));

  // A second handle on the same cache (a copied KVCache): each branch must keep its own tokens.
  const Tensor branch = a;
  Tensor left = kv_cache_append(a, x3);
  Tensor right = kv_cache_append(branch, x1.narrow(1, 0, 1));
  CHECK(same_values(left.narrow(1, 5, 1), x3));
  CHECK(same_values(right.narrow(1, 5, 1), x1.narrow(1, 0, 1)));
  CHECK(same_values(a.narrow(1, 0, 5).narrow(1, 3, 2), x2));

  // Growth past the capacity keeps the contents.
  Tensor big = Tensor();
  std::vector<double> expected;
  for (int i = 0; i < 40; ++i) {
    const Tensor step = Tensor::full({1, 1, 2, 4}, i, DType::f64);
    big = kv_cache_append(std::move(big), step);
    for (int j = 0; j < 8; ++j) expected.push_back(i);
  }
  CHECK(big.shape() == Shape{1, 40, 2, 4});
  CHECK(big.to_vector<double>() == expected);
  CHECK_THROWS_WITH_AS(kv_cache_append(big, Tensor::zeros({1, 1, 3, 4}, DType::f64)),
                       doctest::Contains("differ outside the time dim"), Error);
}

TEST_CASE("llama: activation checkpointing gives identical loss and gradients") {
  for (bool tied : {false, true}) {
    CAPTURE(tied);
    const LlamaConfig c = testing::tiny_llama_config(tied);
    Llama plain(c, {.seed = 3}), recomputed(c, {.seed = 3, .activation_checkpointing = true});
    const Tensor tokens = random_tokens(2, 7, c.vocab_size, 4), targets = random_tokens(2, 7, c.vocab_size, 5);
    const Tensor l1 = plain.loss(tokens, targets), l2 = recomputed.loss(tokens, targets);
    CHECK(l1.item() == l2.item());
    l1.backward();
    l2.backward();
    const auto p1 = plain.named_parameters(), p2 = recomputed.named_parameters();
    for (size_t i = 0; i < p1.size(); ++i) {
      CAPTURE(p1[i].first);
      REQUIRE(p2[i].second.grad().defined());
      CHECK(same_values(p1[i].second.grad(), p2[i].second.grad()));
    }
  }
}

TEST_CASE("llama: bf16 parameters give bf16 logits and a trainable loss") {
  const LlamaConfig c = testing::tiny_llama_config(true);
  Llama model(c, {.dtype = DType::bf16, .seed = 1});
  for (const auto& [name, p] : model.named_parameters()) CHECK(p.dtype() == DType::bf16);
  const Tensor tokens = random_tokens(2, 6, c.vocab_size, 6);
  const Tensor logits = model.forward(tokens);
  CHECK(logits.dtype() == DType::bf16);
  const Tensor loss = model.loss(tokens, random_tokens(2, 6, c.vocab_size, 7));
  CHECK(loss.dtype() == DType::f32);
  CHECK(std::isfinite(loss.item()));
  loss.backward();
  const Tensor g = model.find_parameter("model.embed_tokens.weight")->grad();
  REQUIRE(g.defined());
  CHECK(g.dtype() == DType::bf16);

  // The same weights in f32 agree with the bf16 model to bf16 precision.
  Llama wide(c, {.seed = 1});
  {
    NoGradGuard no_grad;
    for (auto& [name, p] : wide.named_parameters()) p.copy_(*model.find_parameter(name));
  }
  CHECK(relative_error(logits, wide.forward(tokens)) < 0.05);
}

TEST_CASE("llama: deferred projections hold no weights until a loader fills them") {
  const models::LlamaConfig config = testing::tiny_llama_config(false);
  models::LlamaOptions options;
  options.defer_projections = true;
  models::Llama deferred(config, options);
  models::Llama dense(config);
  // Embedding, norms and the head are allocated; the 7 projections per layer are not.
  CHECK(deferred.named_parameters().size() == dense.named_parameters().size() - 7 * config.num_hidden_layers);
  CHECK(deferred.named_parameters().back().first == "lm_head.weight");
  const Tensor tokens = Tensor::from_vector(std::vector<int64_t>{1, 2, 3}, {1, 3});
  CHECK_THROWS_WITH(deferred.forward(tokens), doctest::Contains("was never loaded"));
}
