// QAT module passes (quant/qat.h): prepare swaps in fake-quant modules over the same parameters, their
// forward and straight-through backward, the step switch, and convert to the real quantized modules, whose
// outputs equal the prepared ones (on single layers and on a Llama).
#include <doctest/doctest.h>

#include <memory>
#include <string>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/numerics/f16.h"
#include "engine/numerics/ggml_blocks.h"
#include "engine/rng.h"
#include "models/llama.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"
#include "ops/nn/embedding.h"
#include "ops/nn/linear.h"
#include "ops/reduce.h"
#include "quant/fake_quantized_embedding.h"
#include "quant/fake_quantized_linear.h"
#include "quant/int4_weight_only_linear.h"
#include "quant/int8_dyn_act_int4_weight_linear.h"
#include "quant/qat.h"
#include "quant/qat_fake_quantize.h"
#include "quant/quantized_embedding.h"
#include "tests/llama_fixtures.h"
#include "tests/testing.h"

using namespace qtune;
using quant::QATConfig;
using quant::QATStep;

namespace {

// A stand-in for a model: two projections, an embedding and an output head.
class Net : public Module {
 public:
  explicit Net(int64_t in = 64, bool bias = true) : Module("Net") {
    Generator gen(3);
    nn::Linear::Options o;
    o.bias = bias;
    o.generator = &gen;
    up = std::make_shared<nn::Linear>(in, 96, o);
    down = std::make_shared<nn::Linear>(96, 64, o);
    lm_head = std::make_shared<nn::Linear>(64, 40, o);
    nn::Embedding::Options eo;
    eo.generator = &gen;
    embed = std::make_shared<nn::Embedding>(50, 64, eo);
    register_module("embed", &embed);
    register_module("up", &up);
    register_module("down", &down);
    register_module("lm_head", &lm_head);
  }
  ModulePtr embed, up, down, lm_head;
};

Tensor uniform(const Shape& shape, uint64_t seed, double scale = 1.0) {
  return testing::random_f64(shape, seed, -scale, scale).to(DType::f32);
}

}  // namespace

TEST_CASE("scheme names parse, and an unknown one lists the valid names") {
  CHECK(quant::scheme_name(quant::parse_linear_scheme("8da4w")) == "8da4w");
  CHECK(std::get<quant::Int8DynActInt4Weight>(quant::parse_linear_scheme("8da4w")).group_size == 32);
  CHECK(std::get<quant::Int4WeightOnly>(quant::parse_linear_scheme("int4wo")).group_size == 128);
  CHECK(quant::scheme_name(quant::parse_linear_scheme("q4_0")) == "q4_0");
  CHECK(quant::scheme_name(quant::parse_linear_scheme("q8_0")) == "q8_0");
  CHECK_THROWS_WITH(
      quant::parse_linear_scheme("int3"),
      doctest::Contains("unknown QAT scheme 'int3' (valid: 8da4w, int4wo, q4_0, q8_0, ggml_q4_0, ggml_q8_0)"));
}

TEST_CASE("prepare swaps every Linear but lm_head for a FakeQuantizedLinear over the same tensors") {
  Net net;
  const Tensor up_w = dynamic_cast<nn::Linear&>(*net.up).weight(), up_b = dynamic_cast<nn::Linear&>(*net.up).bias();
  const Tensor embed_w = dynamic_cast<nn::Embedding&>(*net.embed).weight();
  CHECK(quant::quantize_(net, QATConfig{quant::Int8DynActInt4Weight{}, QATStep::Prepare, quant::EmbeddingInt4{}}) == 3);
  auto* up = dynamic_cast<quant::FakeQuantizedLinear*>(net.up.get());
  REQUIRE(up != nullptr);
  CHECK(up->weight().is_same(up_w));
  CHECK(up->bias().is_same(up_b));
  CHECK(net.find_parameter("up.weight")->is_same(up_w));
  CHECK(dynamic_cast<quant::FakeQuantizedLinear*>(net.down.get()) != nullptr);
  CHECK(dynamic_cast<nn::Linear*>(net.lm_head.get()) != nullptr);
  auto* embed = dynamic_cast<quant::FakeQuantizedEmbedding*>(net.embed.get());
  REQUIRE(embed != nullptr);
  CHECK(embed->weight().is_same(embed_w));

  // y = fq_act(x) @ fq_weight(W)^T + b
  const Tensor x = uniform({2, 5, 64}, 11, 3.0);
  const Tensor expected = ops::linear(quant::fake_quantize(x, *quant::activation_spec(up->scheme())),
                                      quant::fake_quantize(up_w, quant::weight_spec(up->scheme())), up_b);
  QTUNE_CHECK_CLOSE(up->forward(x), expected, 0.0, 0.0);
  // Not the plain linear: the quantization is visible.
  CHECK(testing::relative_error(up->forward(x), ops::linear(x, up_w, up_b)) > 1e-3);
}

TEST_CASE("prepare checks every layer first: a group size that does not divide in_features changes nothing") {
  Net net(48);
  CHECK_THROWS_WITH(quant::quantize_(net, QATConfig{quant::Int8DynActInt4Weight{}, QATStep::Prepare}),
                    doctest::Contains("layer 'up' has in_features = 48, which group size 32 does not divide"));
  CHECK(dynamic_cast<nn::Linear*>(net.up.get()) != nullptr);
  CHECK(dynamic_cast<nn::Linear*>(net.down.get()) != nullptr);  // checked before anything was swapped
  CHECK_THROWS_WITH(quant::quantize_(net, QATConfig{quant::Int8DynActInt4Weight{48}, QATStep::Prepare}),
                    doctest::Contains("group size 48 is not supported (use 32, 64, 128 or 256)"));
  // A filter that leaves the odd layer out works.
  CHECK(quant::quantize_(net, QATConfig{quant::Int8DynActInt4Weight{}, QATStep::Prepare},
                         [](const Module&, std::string_view fqn) { return fqn == "down"; }) == 1);
}

TEST_CASE("fake_quant_after_n_steps and the enable switch") {
  Net net;
  QATConfig config{quant::Int4WeightOnly{32}, QATStep::Prepare};
  config.fake_quant_after_n_steps = 3;
  quant::quantize_(net, config);
  auto& up = dynamic_cast<quant::FakeQuantizedLinear&>(*net.up);
  const Tensor x = uniform({4, 64}, 12);
  const Tensor plain = ops::linear(x, up.weight(), up.bias());
  const Tensor fq = ops::linear(x, quant::fake_quantize(up.weight(), quant::weight_spec(up.scheme())), up.bias());
  for (int64_t step : {0, 2}) {
    quant::set_qat_step(net, step);
    CHECK_FALSE(up.fake_quant_active());
    QTUNE_CHECK_CLOSE(up.forward(x), plain, 0.0, 0.0);
  }
  quant::set_qat_step(net, 3);
  CHECK(up.fake_quant_active());
  QTUNE_CHECK_CLOSE(up.forward(x), fq, 0.0, 0.0);
  quant::set_fake_quant_enabled(net, false);
  QTUNE_CHECK_CLOSE(up.forward(x), plain, 0.0, 0.0);
}

TEST_CASE("FakeQuantizedLinear gradients in f64: straight-through with clamp masks, exact bias gradient") {
  Generator gen(5);
  nn::Linear::Options o;
  o.dtype = DType::f64;
  o.generator = &gen;
  nn::Linear linear(32, 8, o);
  quant::FakeQuantizedLinear fq(linear, quant::Int8DynActInt4Weight{32});
  const Tensor x = testing::random_f64({3, 32}, 21, -2.0, 2.0).requires_grad_(true);
  const Tensor g = testing::random_f64({3, 8}, 22);
  fq.forward(x).backward(g);

  // The same function spelled out: masks from the scalar reference, values from the fake quantizers.
  const auto act = *quant::activation_spec(fq.scheme()), wspec = quant::weight_spec(fq.scheme());
  Tensor mask_x = Tensor::empty({3, 32}, DType::u8), mask_w = Tensor::empty({8, 32}, DType::u8);
  Tensor xq = Tensor::empty({3, 32}, DType::f64), wq = Tensor::empty({8, 32}, DType::f64);
  backend_for(Device::cpu()).fake_quantize(x.detach(), act, xq, mask_x);
  backend_for(Device::cpu()).fake_quantize(linear.weight().detach(), wspec, wq, mask_w);
  const Tensor grad_x = ops::mul(ops::matmul(g, wq), mask_x.to(DType::f64));
  const Tensor grad_w = ops::mul(ops::matmul(g, xq, true, false), mask_w.to(DType::f64));
  QTUNE_CHECK_CLOSE(x.grad(), grad_x, 1e-12, 1e-12);
  QTUNE_CHECK_CLOSE(linear.weight().grad(), grad_w, 1e-12, 1e-12);
  // Some weights are clamped (+max|w| of a group maps to 7.5, rounds to 8): their gradient is zero.
  CHECK(ops::sum(mask_w.to(DType::f64), {0, 1}).item() < 256);

  // Finite differences in f64 where the function is smooth: the bias (fake quantization is piecewise
  // constant in x and W, so central differences there are 0 away from rounding boundaries, and the STE
  // gradient above is what training uses).
  const Tensor xs = x.detach();
  const double worst = testing::gradcheck(
      [&](const std::vector<Tensor>& in) {
        return ops::add(
            ops::linear(quant::fake_quantize(xs, act), quant::fake_quantize(linear.weight().detach(), wspec)), in[0]);
      },
      {linear.bias().detach().clone().requires_grad_(true)});
  CHECK(worst <= 1.0);
  // Away from rounding boundaries the fake-quantized forward does not move under a tiny perturbation of x.
  NoGradGuard no_grad;
  QTUNE_CHECK_CLOSE(fq.forward(ops::add(xs, Tensor::full({3, 32}, 1e-9, DType::f64))), fq.forward(xs), 0.0, 1e-12);
}

TEST_CASE("convert 8da4w: the int8 x int4 module equals the prepared fake-quant outputs") {
  for (const int64_t group : {32, 64, 128, 256}) {
    CAPTURE(group);
    Generator gen(7 + group);
    nn::Linear::Options o;
    o.generator = &gen;
    auto linear = std::make_shared<nn::Linear>(256, 48, o);
    quant::FakeQuantizedLinear fq(*linear, quant::Int8DynActInt4Weight{group});
    quant::Int8DynActInt4WeightLinear converted(linear->weight(), linear->bias(), quant::Int8DynActInt4Weight{group});
    for (const int64_t tokens : {1, 7}) {
      const Tensor x = uniform({tokens, 256}, 30 + tokens, 4.0);
      NoGradGuard no_grad;
      const double err = testing::relative_error(converted.forward(x), fq.forward(x));
      CHECK(err <= 1e-4);
      MESSAGE("8da4w group ", group, ", ", tokens, " tokens: max relative error ", err);
    }
  }
}

TEST_CASE("convert int4 weight-only, q4_0, q8_0 and embeddings: bit-equal to the prepared model") {
  for (const char* scheme : {"int4wo", "q4_0", "q8_0"}) {
    CAPTURE(scheme);
    Net net;
    quant::LinearScheme s = quant::parse_linear_scheme(scheme);
    if (std::holds_alternative<quant::Int4WeightOnly>(s)) s = quant::Int4WeightOnly{32};
    quant::quantize_(net, QATConfig{s, QATStep::Prepare, quant::EmbeddingInt4{}});
    const Tensor ids = Tensor::from_vector(std::vector<int64_t>{3, 0, 49, 3, 17}, {5});
    const Tensor x = uniform({3, 64}, 40);
    NoGradGuard no_grad;
    const Tensor embed_before = net.embed->forward(ids), up_before = net.up->forward(x);
    CHECK(quant::quantize_(net, QATConfig{s, QATStep::Convert, quant::EmbeddingInt4{}}) == 3);
    CHECK(dynamic_cast<quant::QuantizedEmbedding*>(net.embed.get()) != nullptr);
    QTUNE_CHECK_CLOSE(net.embed->forward(ids), embed_before, 0.0, 0.0);
    QTUNE_CHECK_CLOSE(net.up->forward(x), up_before, 0.0, 0.0);
    if (std::string(scheme) == "int4wo") {
      CHECK(dynamic_cast<quant::Int4WeightOnlyLinear*>(net.up.get()) != nullptr);
    } else {
      // The values llama.cpp will dequantize: quantizing them again changes nothing (a lossless export).
      const Tensor w = dynamic_cast<nn::Linear&>(*net.up).weight();
      QTUNE_CHECK_CLOSE(quant::fake_quantize(w, quant::weight_spec(s)), w, 0.0, 0.0);
    }
  }
  Net net;
  quant::quantize_(net, QATConfig{quant::Q4_0{}, QATStep::Prepare});
  CHECK_THROWS_WITH(quant::quantize_(net, QATConfig{quant::Q8_0{}, QATStep::Convert}),
                    doctest::Contains("layer 'up' was prepared for q4_0, but the config asks for q8_0"));
  quant::QuantizedEmbedding qe(Tensor::zeros({4, 32}), quant::EmbeddingInt4{});
  CHECK_THROWS_WITH(qe.forward(Tensor::from_vector(std::vector<int64_t>{4}, {1})),
                    doctest::Contains("id 4 at position 0 is out of range for a vocabulary of V = 4"));
}

TEST_CASE("QAT on a Llama: prepare trains through fake quantization, convert reproduces its logits") {
  models::LlamaConfig c = testing::tiny_llama_config();
  c.hidden_size = 128;  // a multiple of 128: the VNNI kernel; down_proj (in 96) the portable one
  c.intermediate_size = 96;
  c.head_dim = 32;
  c.vocab_size = 70;
  models::Llama model(c, models::LlamaOptions{.seed = 9});
  const QATConfig prepare{quant::Int8DynActInt4Weight{32}, QATStep::Prepare, quant::EmbeddingInt4{}};
  // 2 layers x 7 projections + the embedding; lm_head stays float.
  CHECK(quant::quantize_(model, prepare) == 15);
  CHECK(dynamic_cast<nn::Linear*>(model.lm_head.get()) != nullptr);
  CHECK(model.find_module("model.layers.1.mlp.down_proj")->type_name() == "FakeQuantizedLinear");

  Tensor tokens = Tensor::from_vector(std::vector<int64_t>{1, 5, 9, 33, 2, 68, 7, 7, 40, 12, 3, 0}, {2, 6});
  const Tensor loss = model.loss(tokens, tokens);
  loss.backward();
  const Tensor* q = model.find_parameter("model.layers.0.self_attn.q_proj.weight");
  REQUIRE(q->grad().defined());
  CHECK(ops::sum(ops::square(q->grad()), {0, 1}).item() > 0);

  NoGradGuard no_grad;
  const Tensor prepared_logits = model.forward(tokens);
  CHECK(quant::quantize_(model, QATConfig{prepare.scheme, QATStep::Convert, prepare.embedding}) == 15);
  CHECK(model.find_module("model.layers.1.mlp.down_proj")->type_name() == "Int8DynActInt4WeightLinear");
  const double err = testing::relative_error(model.forward(tokens), prepared_logits);
  MESSAGE("Llama 8da4w converted vs prepared logits: max relative error ", err);
  CHECK(err <= 1e-4);
}

TEST_CASE("ggml_q4_0: Q4_0 weights and Q8_0-block inputs, as llama.cpp's CPU dot product computes") {
  const quant::LinearScheme scheme = quant::parse_linear_scheme("ggml_q4_0");
  CHECK(quant::scheme_name(scheme) == "ggml_q4_0");
  CHECK(quant::group_size_of(scheme) == 32);
  CHECK_THROWS_WITH(quant::parse_linear_scheme("ggml_q4_0", 64), doctest::Contains("has fixed blocks of 32"));
  Generator gen(4);
  nn::Linear linear(64, 5, {.bias = false, .generator = &gen});
  const Tensor x = testing::random_f64({3, 64}, 9, -2.0, 2.0).to(DType::f32);
  quant::FakeQuantizedLinear fq(linear, scheme);
  NoGradGuard no_grad;
  const Tensor y = fq.forward(x);

  // llama.cpp: each input row quantized to Q8_0 blocks, each weight row to Q4_0 blocks, then per block
  // d_x * d_w * sum(q_x * (q_w - 8)), summed over the blocks.
  const auto xv = x.to_vector<float>(), wv = linear.weight().detach().to_vector<float>(), yv = y.to_vector<float>();
  for (int64_t r = 0; r < 3; ++r) {
    numerics::BlockQ8_0 xb[2];
    numerics::quantize_row_q8_0_ref(xv.data() + r * 64, xb, 64);
    for (int64_t o = 0; o < 5; ++o) {
      numerics::BlockQ4_0 wb[2];
      numerics::quantize_row_q4_0_ref(wv.data() + o * 64, wb, 64);
      double dot = 0.0;
      for (int b = 0; b < 2; ++b) {
        int32_t sum = 0;
        for (int j = 0; j < 16; ++j) {
          sum += xb[b].qs[j] * ((wb[b].qs[j] & 0xf) - 8) + xb[b].qs[j + 16] * ((wb[b].qs[j] >> 4) - 8);
        }
        dot += static_cast<double>(numerics::f16_bits_to_f32(xb[b].d)) * numerics::f16_bits_to_f32(wb[b].d) * sum;
      }
      CAPTURE(r);
      CAPTURE(o);
      CHECK(yv[r * 5 + o] == doctest::Approx(dot).epsilon(1e-5));
    }
  }
  // Plain q4_0 leaves the inputs alone: a different result.
  quant::FakeQuantizedLinear weights_only(linear, quant::LinearScheme{quant::Q4_0{}});
  CHECK(testing::relative_error(weights_only.forward(x), y) > 1e-4);
  // Convert keeps the Q4_0 weights (llama.cpp quantizes the inputs itself).
  models::Llama model(testing::aligned_llama_config(), {.seed = 1});
  CHECK(quant::quantize_(model, QATConfig{scheme, QATStep::Prepare}) == 14);
  CHECK(quant::quantize_(model, QATConfig{scheme, QATStep::Convert}) == 14);
}
