// Mixed precision (bf16 weights and compute, f32 masters in the optimizer: docs/numerics.md §6) against
// PyTorch's: tests/golden/llama/mixed_precision.safetensors, written by tools/goldens/gen_mixed_precision.py.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "engine/io/safetensors.h"
#include "models/hf_checkpoint.h"
#include "models/llama.h"
#include "ops/cross_entropy.h"
#include "optim/adamw.h"
#include "tests/llama_fixtures.h"
#include "tests/testing.h"

using namespace qtune;

namespace {

constexpr int kSteps = 3;
constexpr double kLr = 1e-4;

struct Run {
  std::vector<double> losses;
  std::vector<std::pair<std::string, Tensor>> weights;  // bf16, after the last step
  optim::OptimizerState state;
};

// The golden's run: kSteps AdamW steps (weight decay 0) on untied_mha in bf16, with or without f32 masters.
Run train(bool masters) {
  const std::string dir = testing::llama_golden_dir("untied_mha");
  const auto ref = io::SafetensorsFile::open(dir + "/reference.safetensors");
  const Tensor tokens = ref.tensor("tokens"), targets = ref.tensor("targets");
  auto model = models::load_llama(dir, {.dtype = DType::bf16});
  optim::AdamW opt(model->parameters(), {.lr = kLr, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.0});
  if (masters) opt.keep_f32_masters();
  Run run;
  for (int s = 0; s < kSteps; ++s) {
    const Tensor loss = ops::cross_entropy(model->forward(tokens), targets);
    run.losses.push_back(loss.item());
    loss.backward();
    opt.step();
    opt.zero_grad();
  }
  run.weights = model->named_parameters();
  run.state = opt.state();
  return run;
}

// The share of elements whose change from the initial weights is within a quarter of one update (kLr) of the
// golden's master's change.
double share_following(const Tensor& now, const Tensor& initial, const Tensor& golden) {
  const auto a = now.to_vector<double>(), i = initial.to_vector<double>(), g = golden.to_vector<double>();
  size_t close = 0;
  for (size_t k = 0; k < a.size(); ++k) close += std::abs((a[k] - i[k]) - (g[k] - i[k])) <= 0.25 * kLr;
  return double(close) / double(a.size());
}

}  // namespace

TEST_CASE("mixed precision follows PyTorch's bf16 steps on f32 masters; pure bf16 loses the small updates") {
  const auto gold = io::SafetensorsFile::open(std::string(QTUNE_GOLDEN_DIR) + "/llama/mixed_precision.safetensors");
  const std::vector<float> golden_losses = gold.tensor("loss").to_vector<float>();
  REQUIRE(golden_losses.size() == size_t(kSteps));

  const Run mixed = train(true), pure = train(false);
  // Both bf16 runs round different intermediates (PyTorch's eager attention stores scores and probabilities in
  // bf16, qtune's fused kernels round only their outputs): on the first step each is about 1e-3 from the f32
  // loss, 5.8030, on opposite sides (qtune 5.7966, PyTorch 5.8069).
  for (int s = 0; s < kSteps; ++s) {
    CAPTURE(s);
    CHECK(mixed.losses[size_t(s)] == doctest::Approx(golden_losses[size_t(s)]).epsilon(4e-3));
  }
  double total_mixed = 0, total_pure = 0;
  for (size_t i = 0; i < mixed.weights.size(); ++i) {
    const auto& [name, weight] = mixed.weights[i];
    CAPTURE(name);
    const Tensor master = mixed.state.tensors.at("state." + std::to_string(i) + ".master");
    const Tensor initial = gold.tensor("initial." + name), golden = gold.tensor("master." + name);
    // qtune's weight is its master rounded once; the master tracks PyTorch's element by element, up to the
    // gradients whose sign bf16 compute order flips.
    CHECK(master.to(DType::bf16).to_vector<float>() == weight.to_vector<float>());
    const double mixed_share = share_following(master, initial, golden);
    const double pure_share = share_following(pure.weights[i].second, initial, golden);
    CHECK(mixed_share >= 0.9);
    total_mixed += mixed_share;
    total_pure += pure_share;
  }
  const double n = double(mixed.weights.size());
  MESSAGE("elements following PyTorch's masters: mixed ", total_mixed / n, ", pure bf16 ", total_pure / n);
  // Most single updates are below half a bf16 spacing of these weights: pure bf16 keeps few of them.
  CHECK(total_pure / n < 0.5);
}
