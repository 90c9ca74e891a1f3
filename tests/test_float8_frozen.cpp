// Float8FrozenLinear, the float8 base of LoRA: forward and grad-input against Float8Linear with a frozen
// weight, 1 byte per weight and no dense copy alive, the conversion pass, and LoRA over it training and
// merging.
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/allocator.h"
#include "engine/autograd.h"
#include "engine/check.h"
#include "models/llama.h"
#include "models/lora.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"
#include "ops/nn/linear.h"
#include "optim/adamw.h"
#include "quant/float8.h"
#include "quant/float8_frozen_linear.h"
#include "quant/float8_linear.h"
#include "tests/llama_fixtures.h"
#include "tests/testing.h"

using namespace qtune;
using namespace qtune::quant;

namespace {

constexpr Float8Recipe kRecipes[] = {Float8Recipe::tensorwise, Float8Recipe::rowwise, Float8Recipe::rowwise_with_gw_hp};

// [rows, cols] f32 whose rows span several binades, so per-row and per-tensor scales differ.
Tensor spread(int64_t rows, int64_t cols, uint64_t seed) {
  std::vector<double> v = testing::random_f64({rows, cols}, seed).to_vector<double>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) v[static_cast<size_t>(r * cols + c)] *= std::ldexp(1.3, (r % 7) - 3);
  return Tensor::from_doubles(v, {rows, cols}, DType::f32);
}

struct Result {
  Tensor y, dx;
};

// y = module(x) and dx for the upstream gradient gy. x: [..., in], gy: [..., out]
Result run(Module& module, const Tensor& x, const Tensor& gy) {
  Tensor xg = x.detach().clone().requires_grad_(true);
  const Tensor y = module.forward(xg);
  y.backward(gy);
  return {y.detach(), xg.grad()};
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && testing::closeness(a, b, 0, 0) <= 1.0;
}

}  // namespace

TEST_CASE("forward and grad-input equal a frozen Float8Linear's (bit for bit where the casts of W agree)") {
  for (const DType dtype : {DType::f32, DType::bf16}) {
    for (const Float8Recipe recipe : kRecipes) {
      for (const bool pow2 : {true, false}) {
        CAPTURE(dtype_name(dtype));
        CAPTURE(float8_recipe_name(recipe));
        CAPTURE(pow2);
        const Float8LinearConfig config{recipe, pow2};
        nn::Linear dense(64, 48, nn::Linear::Options{.dtype = dtype});
        {
          NoGradGuard no_grad;
          dense.weight().copy_(spread(48, 64, 1).to(dtype));
          dense.bias().copy_(testing::random_f64({48}, 2).to(dtype));
        }
        dense.requires_grad_(false);
        Float8Linear reference(dense, recipe, pow2);
        Float8FrozenLinear frozen(dense, config);
        const Tensor x = spread(10, 64, 3).reshape({2, 5, 64}).to(dtype);
        const Tensor gy = spread(10, 48, 4).reshape({2, 5, 48}).to(dtype);
        const Result want = run(reference, x, gy), got = run(frozen, x, gy);
        CHECK(got.y.dtype() == dtype);
        CHECK(same_bits(got.y, want.y));  // W's forward cast is the stored one for every recipe
        if (recipe == Float8Recipe::tensorwise) {
          CHECK(same_bits(got.dx, want.dx));
          continue;
        }
        // The rowwise recipes re-cast W for dx (per in-column, or per tensor); the frozen base multiplies
        // by its stored per-out-row W instead: dx = dy_q @ W_stored exactly, Float8Linear's dy_q @ W_ref.
        const Float8GemmCasts& casts = float8_recipe_casts(recipe).grad_input;
        const Tensor dy_q = dequantize_fp8(quantize_fp8(gy.reshape({10, 48}), *casts.a, pow2));
        const Fp8Tensor stored = frozen.weight();
        const Fp8Tensor ref = quantize_fp8(dense.weight(), *casts.b, pow2);
        CHECK(same_bits(got.dx, ops::matmul(dy_q, dequantize_fp8(stored)).to(dtype).reshape({2, 5, 64})));
        // Each of the two casts is off by half an e4m3 ulp (2^-4 relative) in the normal range, or by half
        // the smallest subnormal (2^-10) over its scale below it. With power-of-two scales the two casts
        // differ only there: the scales are powers of two apart, so normal-range roundings coincide.
        const auto w = dense.weight().to_vector<double>(), a = dequantize_fp8(stored).to_vector<double>(),
                   b = dequantize_fp8(ref).to_vector<double>();
        const auto sa = stored.scale.to_vector<double>(), sb = ref.scale.to_vector<double>();
        double worst = 0;
        size_t differ = 0;
        for (size_t i = 0; i < w.size(); ++i) {
          const size_t row = i / 64, col = i % 64;
          const double inv_a = 1 / sa[row], inv_b = 1 / sb[sb.size() == 1 ? 0 : col];
          const double bound = std::ldexp(std::fabs(w[i]), -3) + std::ldexp(inv_a + inv_b, -10);
          worst = std::max(worst, std::fabs(a[i] - b[i]) / bound);
          differ += a[i] != b[i];
        }
        CHECK(worst <= 1.0);
        CHECK(differ > 0);  // the two casts do differ on this weight
        const double error = testing::relative_error(got.dx, want.dx);
        MESSAGE("W elements cast differently: ", differ, " of ", w.size(), "; dx vs Float8Linear relative error ",
                error);
        CHECK(error < 0.125);
      }
    }
  }
}

TEST_CASE("the module holds 1 byte per weight plus its scales, and no dense weight stays alive") {
  const int64_t out = 1024, in = 2048, tokens = 8;
  for (const Float8Recipe recipe : {Float8Recipe::tensorwise, Float8Recipe::rowwise}) {
    CAPTURE(float8_recipe_name(recipe));
    const size_t scale_bytes = (recipe == Float8Recipe::tensorwise ? 1 : out) * sizeof(float);
    const size_t before = memory_stats(Device::cpu()).allocated;
    std::unique_ptr<Float8FrozenLinear> frozen;
    {
      const Tensor dense = testing::random_f64({out, in}, 5, -0.05, 0.05).to(DType::f32);
      frozen = std::make_unique<Float8FrozenLinear>(dense, Tensor(), Float8LinearConfig::from_recipe(recipe));
    }
    CHECK(memory_stats(Device::cpu()).allocated - before == out * in + scale_bytes);
    CHECK(frozen->named_parameters().empty());
    const auto buffers = frozen->named_buffers();
    REQUIRE(buffers.size() == 2);
    CHECK(buffers[0].second.dtype() == DType::u8);
    CHECK(buffers[0].second.nbytes() == size_t(out * in));
    CHECK(buffers[1].second.nbytes() == scale_bytes);
    CHECK(frozen->state_dict().empty());

    Tensor x = testing::random_f64({tokens, in}, 6).to(DType::f32).requires_grad_(true);
    const Tensor gy = testing::random_f64({tokens, out}, 7).to(DType::f32);
    const size_t base = memory_stats(Device::cpu()).allocated;
    Tensor y = frozen->forward(x);
    // Only y outlives the forward: the backward node keeps the stored codes, neither x nor a dense W.
    CHECK(memory_stats(Device::cpu()).allocated - base == y.nbytes());
    y.backward(gy);
    CHECK(x.grad().shape() == Shape{tokens, in});
  }
}

TEST_CASE("Module::to(bf16) leaves the fp8 codes and their f32 scales alone") {
  nn::Linear dense(32, 16, nn::Linear::Options{.bias = false});  // a bias is a parameter: to() does cast it
  Float8FrozenLinear frozen(dense, {});
  const Tensor x = spread(3, 32, 8);
  const Tensor y = frozen.forward(x);
  frozen.to(DType::bf16);
  CHECK(frozen.named_buffers()[0].second.dtype() == DType::u8);
  CHECK(frozen.weight().scale.dtype() == DType::f32);
  CHECK(same_bits(frozen.forward(x), y));
}

TEST_CASE("convert_to_float8_frozen: the default exclusions, and forcing an excluded linear names the pass") {
  struct Net : Module {
    Net() : Module("Net") {
      register_module("proj", &proj);
      register_module("odd", &odd);
      register_module("lm_head", &lm_head);
    }
    ModulePtr proj = std::make_shared<nn::Linear>(32, 16);
    ModulePtr odd = std::make_shared<nn::Linear>(32, 24);
    ModulePtr lm_head = std::make_shared<nn::Linear>(16, 64);
  };
  Net net;
  CHECK(convert_to_float8_frozen(net, Float8LinearConfig::from_recipe(Float8Recipe::rowwise)) == 1);
  CHECK(net.proj->type_name() == "Float8FrozenLinear");
  CHECK(static_cast<Float8FrozenLinear&>(*net.proj).config().recipe == Float8Recipe::rowwise);
  CHECK(net.odd->type_name() == "Linear");
  CHECK(net.lm_head->type_name() == "Linear");
  CHECK(convert_to_float8_frozen(net, {}) == 0);  // a Float8FrozenLinear is not a Linear
  CHECK_THROWS_WITH_AS(
      convert_to_float8_frozen(net, {}, [](const Module&, std::string_view n) { return n == "odd"; }),
      doctest::Contains("convert_to_float8_frozen: cannot convert 'odd' (Linear 32 -> 24): fp8 GEMMs need"), Error);
  CHECK(net.odd->type_name() == "Linear");
}

namespace {

const std::vector<std::string> kTargets = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

}  // namespace

TEST_CASE("LoRA over a float8 frozen base trains only the adapters and merges") {
  models::Llama model(testing::aligned_llama_config());
  CHECK(convert_to_float8_frozen(model, {}) == 14);
  const Tensor base_logits = testing::eval_logits(model);
  CHECK(models::apply_lora(model, {.rank = 4, .alpha = 8, .targets = kTargets, .seed = 3}) == 14);
  auto* lora = dynamic_cast<models::LoRALinear*>(model.find_module("model.layers.1.mlp.down_proj"));
  REQUIRE(lora != nullptr);
  CHECK(dynamic_cast<Float8FrozenLinear*>(&lora->base()) != nullptr);
  CHECK(model.trainable_parameters().size() == 28);

  std::map<std::string, Tensor> frozen;
  for (const auto& [name, t] : model.named_parameters())
    if (name.find("lora_") == std::string::npos) frozen[name] = t.detach().clone();
  optim::AdamW opt(models::lora_parameters(model), {.lr = 1e-2, .weight_decay = 0.0});
  const Tensor targets =
      Tensor::from_vector(std::vector<int64_t>{5, 9, 33, 2, 17, 60, 4, 41, 12, 3, 7, 19, 8, 8}, {2, 7});
  double first = 0, last = 0;
  for (int step = 0; step < 8; ++step) {
    opt.zero_grad();
    const Tensor loss = model.loss(testing::fixed_tokens(), targets);
    loss.backward();
    for (const auto& [name, t] : model.named_parameters())
      if (frozen.count(name)) CHECK_MESSAGE(!t.grad().defined(), name, " got a gradient");
    CHECK(lora->lora_a().grad().defined());
    opt.step();
    (step == 0 ? first : last) = loss.to_vector<double>()[0];
  }
  CHECK(last < first - 0.05);
  for (const auto& [name, t] : model.named_parameters())
    if (frozen.count(name)) CHECK(testing::relative_error(t, frozen[name]) == 0.0);

  const Tensor lora_logits = testing::eval_logits(model);
  CHECK(testing::relative_error(lora_logits, base_logits) > 0.05);  // training moved the logits
  CHECK(models::merge_lora(model) == 14);
  CHECK(dynamic_cast<nn::Linear*>(model.find_module("model.layers.1.mlp.down_proj")) != nullptr);
  CHECK(model.trainable_parameters().empty());
  // The merged model multiplies the dequantized fp8 W (+ B A) by the exact x, where the LoRA model's base
  // GEMM rounds x to e4m3 first (2^-4 relative per element): the logits agree to that rounding,
  // compounded over two layers, not to f32.
  const double error = testing::relative_error(testing::eval_logits(model), lora_logits);
  MESSAGE("merged vs LoRA logits over the float8 base: relative error ", error);
  CHECK(error < 5e-2);
}
