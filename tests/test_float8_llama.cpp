// A small Llama converted to float8 trains like the f32 model: the same init, data and AdamW steps, with
// every recipe, give a loss curve within a few percent of the f32 one.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "engine/autograd.h"
#include "models/llama.h"
#include "optim/adamw.h"
#include "quant/float8.h"
#include "tests/llama_fixtures.h"

using namespace qtune;

namespace {

// 16-aligned projections (hidden 32, q/o 32x32, k/v 32->16, MLP 32<->64) so every one converts;
// the 64-token head stays in high precision.
models::LlamaConfig aligned_config() {
  models::LlamaConfig c = testing::tiny_llama_config();
  c.vocab_size = 64;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.max_position_embeddings = 64;
  return c;
}

// The loss before each of `steps` AdamW steps on one fixed batch whose sequences repeat a short
// pattern, so the loss falls quickly and a broken gradient shows.
std::vector<double> train(const quant::Float8LinearConfig* float8, int steps) {
  models::Llama model(aligned_config(), {.seed = 5});
  if (float8 != nullptr) CHECK(quant::convert_to_float8(model, *float8) == 14);  // 7 linears x 2 layers
  std::vector<int64_t> tokens, targets;
  for (int64_t b = 0; b < 2; ++b) {
    for (int64_t t = 0; t < 24; ++t) {
      tokens.push_back(3 + (t * (b + 2)) % 11);
      targets.push_back(3 + ((t + 1) * (b + 2)) % 11);
    }
  }
  const Tensor x = Tensor::from_vector(tokens, {2, 24}), y = Tensor::from_vector(targets, {2, 24});
  optim::AdamW opt(model.trainable_parameters(), {.lr = 1e-2, .weight_decay = 0.0});
  std::vector<double> losses;
  for (int s = 0; s < steps; ++s) {
    opt.zero_grad();
    const Tensor loss = model.loss(x, y);
    losses.push_back(loss.item());
    autograd::backward({loss}, {Tensor()});
    opt.step();
  }
  return losses;
}

}  // namespace

TEST_CASE("a float8 Llama trains within a few percent of the f32 loss curve with every recipe") {
  const int steps = 8;
  const std::vector<double> ref = train(nullptr, steps);
  REQUIRE(ref.back() < 0.6 * ref.front());  // the task is learnable in a few steps
  for (quant::Float8Recipe recipe :
       {quant::Float8Recipe::tensorwise, quant::Float8Recipe::rowwise, quant::Float8Recipe::rowwise_with_gw_hp}) {
    CAPTURE(quant::float8_recipe_name(recipe));
    const quant::Float8LinearConfig config = quant::Float8LinearConfig::from_recipe(recipe);
    const std::vector<double> got = train(&config, steps);
    // The first loss differs only by the forward's fp8 rounding (measured: <= 0.03%), later ones also by
    // the fp8 gradients' (measured: <= 1.5%, tensorwise's e5m2 gradients the furthest).
    CHECK(got[0] != ref[0]);
    CHECK(std::fabs(got[0] - ref[0]) <= 2e-3 * ref[0]);
    for (int s = 0; s < steps; ++s) {
      CAPTURE(s);
      CHECK(std::fabs(got[s] - ref[s]) <= 0.03 * ref[s]);
    }
  }
}
