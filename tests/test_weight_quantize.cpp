// Post-training quantization of single linears (quant/weight_quantize.h): every scheme builds the module
// whose outputs equal the QAT-prepared fake quantization of the same weight (NF4: the linear over its
// dequantized weight), and bad names and group sizes fail naming the rule.
#include <doctest/doctest.h>

#include <memory>
#include <optional>
#include <string>
#include <variant>

#include "engine/autograd.h"
#include "engine/rng.h"
#include "ops/matmul.h"
#include "ops/nn/linear.h"
#include "quant/fake_quantized_linear.h"
#include "quant/frozen_nf4_linear.h"
#include "quant/int4_weight_only_linear.h"
#include "quant/int8_dyn_act_int4_weight_linear.h"
#include "quant/nf4_tensor.h"
#include "quant/weight_quantize.h"
#include "tests/llama_fixtures.h"
#include "tests/testing.h"

using namespace qtune;

namespace {

std::shared_ptr<nn::Linear> random_linear(int64_t in, int64_t out, uint64_t seed) {
  Generator gen(seed);
  nn::Linear::Options o;
  o.generator = &gen;
  return std::make_shared<nn::Linear>(in, out, o);
}

}  // namespace

TEST_CASE("parse_weight_scheme: names, group sizes, and errors listing the valid names") {
  CHECK(quant::weight_scheme_name(quant::parse_weight_scheme("nf4")) == "nf4");
  for (const char* name : {"8da4w", "int4wo", "q4_0", "q8_0"}) {
    CHECK(quant::weight_scheme_name(quant::parse_weight_scheme(name)) == name);
  }
  const auto s = quant::parse_weight_scheme("8da4w", 128);
  CHECK(std::get<quant::Int8DynActInt4Weight>(s).group_size == 128);
  CHECK(std::get<quant::Int4WeightOnly>(quant::parse_weight_scheme("int4wo")).group_size == 128);
  CHECK_THROWS_WITH(quant::parse_weight_scheme("int3"),
                    doctest::Contains("unknown quantization scheme 'int3' (valid: 8da4w, int4wo, nf4, q4_0, q8_0)"));
  CHECK_THROWS_WITH(quant::parse_weight_scheme("q4_0", 64),
                    doctest::Contains("q4_0 has fixed blocks of 32 weights; a group size (--group-size, "
                                      "quant.group_size) applies to 8da4w and int4wo only, got 64"));
  CHECK_THROWS_WITH(quant::parse_weight_scheme("8da4w", 48), doctest::Contains("group size 48 is not supported"));
  CHECK_THROWS_WITH(
      quant::check_weight_scheme_fits(quant::parse_weight_scheme("int4wo", 64), 8, 96, "layers.0.mlp.up_proj"),
      doctest::Contains("layer 'layers.0.mlp.up_proj' has in_features = 96"));
  CHECK_NOTHROW(quant::check_weight_scheme_fits(quant::NF4{}, 7, 96, "any"));
  CHECK_THROWS_WITH(quant::check_weight_scheme_fits(quant::Float8Weights{}, 24, 96, "model.layers.0.mlp.up_proj"),
                    doctest::Contains("fp8: layer 'model.layers.0.mlp.up_proj' is 24 x 96; fp8 GEMMs need both dims"));
}

TEST_CASE("quantize_linear builds each scheme's module, equal to the fake-quantized linear") {
  const auto linear = random_linear(128, 40, 11);
  const Tensor x = testing::random_f64({5, 128}, 12, -3.0, 3.0).to(DType::f32);
  NoGradGuard no_grad;
  const quant::LinearScheme schemes[] = {quant::Int8DynActInt4Weight{32}, quant::Int4WeightOnly{32}, quant::Q4_0{},
                                         quant::Q8_0{}};
  for (const quant::LinearScheme& scheme : schemes) {
    const std::string name = quant::scheme_name(scheme);
    CAPTURE(name);
    const quant::WeightScheme as_weight_scheme = quant::stored_weight_scheme(scheme);
    const ModulePtr m = quant::quantize_linear(linear->weight(), linear->bias(), as_weight_scheme, "proj");
    quant::FakeQuantizedLinear fq(*linear, scheme);
    const double tolerance = name == "8da4w" ? 1e-4 : 0.0;
    CHECK(testing::relative_error(m->forward(x), fq.forward(x)) <= tolerance);
  }
  CHECK(dynamic_cast<quant::Int8DynActInt4WeightLinear*>(
            quant::quantize_linear(linear->weight(), {}, quant::parse_weight_scheme("8da4w"), "p").get()) != nullptr);
  CHECK(dynamic_cast<quant::Int4WeightOnlyLinear*>(
            quant::quantize_linear(linear->weight(), {}, quant::parse_weight_scheme("int4wo", 64), "p").get()) !=
        nullptr);

  const ModulePtr nf4 = quant::quantize_linear(linear->weight(), linear->bias(), quant::NF4{}, "proj");
  auto* frozen = dynamic_cast<quant::FrozenNF4Linear*>(nf4.get());
  REQUIRE(frozen != nullptr);
  const Tensor dense = quant::NF4Tensor::quantize(linear->weight()).dequantize();
  QTUNE_CHECK_CLOSE(nf4->forward(x), ops::linear(x, dense, linear->bias()), 1e-5, 1e-5);
  // Rebuilt from its parts (what a quantized checkpoint holds), the module computes the same.
  quant::FrozenNF4Linear rebuilt(frozen->weight(), linear->bias());
  QTUNE_CHECK_CLOSE(rebuilt.forward(x), nf4->forward(x), 0.0, 0.0);
}

TEST_CASE("quantize_linear rejects what the scheme cannot take, naming the layer") {
  const auto linear = random_linear(96, 8, 3);
  CHECK_THROWS_WITH(quant::quantize_linear(linear->weight(), {}, quant::parse_weight_scheme("8da4w", 64),
                                           "model.layers.2.mlp.down_proj"),
                    doctest::Contains("layer 'model.layers.2.mlp.down_proj' has in_features = 96"));
  CHECK_THROWS_WITH(quant::quantize_linear(Tensor::zeros({96}), {}, quant::NF4{}, "norm"),
                    doctest::Contains("quantize 'norm': the weight must be [out, in], got [96]"));
}
