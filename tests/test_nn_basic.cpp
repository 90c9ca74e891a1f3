// The basic modules of ops/nn: parameter names and shapes, torch's initialization distributions,
// and forwards that equal the functional ops.
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/rng.h"
#include "ops/embedding.h"
#include "ops/matmul.h"
#include "ops/nn/embedding.h"
#include "ops/nn/linear.h"
#include "ops/nn/rmsnorm.h"
#include "ops/reduce.h"
#include "ops/rmsnorm.h"
#include "tests/testing.h"

using namespace qtune;

namespace {

std::vector<std::string> names_of(Module& m) {
  std::vector<std::string> names;
  for (auto& [name, t] : m.named_parameters()) names.push_back(name);
  return names;
}

struct Moments {
  double mean, std, max_abs;
};

Moments moments(const Tensor& t) {
  const auto v = t.to_vector<double>();
  double sum = 0, sq = 0, max_abs = 0;
  for (double x : v) {
    sum += x;
    max_abs = std::max(max_abs, std::fabs(x));
  }
  const double mean = sum / static_cast<double>(v.size());
  for (double x : v) sq += (x - mean) * (x - mean);
  return {mean, std::sqrt(sq / static_cast<double>(v.size())), max_abs};
}

}  // namespace

TEST_CASE("Linear over given tensors shares them; a weight that is not [out, in] is refused") {
  const Tensor w = testing::random_f64({3, 5}, 2).to(DType::f32), b = testing::random_f64({3}, 3).to(DType::f32);
  nn::Linear lin(w, b);
  CHECK(lin.in_features() == 5);
  CHECK(lin.out_features() == 3);
  CHECK(lin.weight().is_same(w));
  CHECK(names_of(lin) == std::vector<std::string>{"weight", "bias"});
  nn::Linear no_bias(w);
  CHECK(names_of(no_bias) == std::vector<std::string>{"weight"});
  CHECK_THROWS_WITH_AS(nn::Linear{b}, doctest::Contains("the weight must be [out, in], got [3]"), Error);
  CHECK_THROWS_WITH_AS((nn::Linear{w, w}), doctest::Contains("the bias must be [3], got [3, 5]"), Error);
}

TEST_CASE("Linear: parameters, torch's uniform init and forward") {
  Generator gen(7);
  nn::Linear lin(256, 64, {.generator = &gen});
  CHECK(names_of(lin) == std::vector<std::string>{"weight", "bias"});
  CHECK(lin.weight().shape() == Shape{64, 256});
  CHECK(lin.bias().shape() == Shape{64});
  CHECK(lin.weight().requires_grad());
  // U(-1/sqrt(in), 1/sqrt(in)) for both: std = bound / sqrt(3).
  const double bound = 1.0 / std::sqrt(256.0);
  const Moments w = moments(lin.weight()), b = moments(lin.bias());
  CHECK(w.max_abs <= bound);
  CHECK(w.max_abs > 0.99 * bound);
  CHECK(std::fabs(w.std - bound / std::sqrt(3.0)) < 0.03 * bound);
  CHECK(std::fabs(w.mean) < 0.02 * bound);
  CHECK(b.max_abs <= bound);
  CHECK(b.std > 0.3 * bound);

  // The same seed gives the same weights; forward is ops::linear.
  Generator again(7), other(8);
  nn::Linear same(256, 64, {.generator = &again}), different(256, 64, {.generator = &other});
  QTUNE_CHECK_CLOSE(same.weight(), lin.weight(), 0.0, 1e-300);  // exact
  CHECK(testing::closeness(different.weight(), lin.weight(), 0.0, 1e-3) > 1.0);
  const Tensor x = testing::random_f64({2, 3, 256}, 1).to(DType::f32);
  const Tensor y = lin(x);
  CHECK(y.shape() == Shape{2, 3, 64});
  QTUNE_CHECK_CLOSE(y, ops::linear(x, lin.weight().detach(), lin.bias().detach()), 1e-6, 1e-6);
  ops::sum(y).backward();
  REQUIRE(lin.weight().grad().defined());
  REQUIRE(lin.bias().grad().defined());
  // d sum(y) / d bias = number of rows.
  QTUNE_CHECK_CLOSE(lin.bias().grad(), Tensor::full({64}, 6.0), 0.0, 1e-5);

  nn::Linear no_bias(4, 3, {.bias = false, .dtype = DType::f64, .generator = &gen});
  CHECK(names_of(no_bias) == std::vector<std::string>{"weight"});
  CHECK_FALSE(no_bias.bias().defined());
  CHECK(no_bias.weight().dtype() == DType::f64);
  CHECK(testing::gradcheck([&](auto& in) { return no_bias(in[0]); },
                           {testing::random_f64({2, 4}, 2).requires_grad_()}) <= 1.0);
  CHECK_THROWS_AS(nn::Linear(0, 3), Error);
}

TEST_CASE("Embedding: N(0, 1) init, row lookup and gradient") {
  Generator gen(11);
  nn::Embedding emb(128, 96, {.generator = &gen});
  CHECK(names_of(emb) == std::vector<std::string>{"weight"});
  CHECK(emb.weight().shape() == Shape{128, 96});
  const Moments m = moments(emb.weight());
  CHECK(std::fabs(m.mean) < 0.03);
  CHECK(std::fabs(m.std - 1.0) < 0.03);
  const Tensor ids = Tensor::from_vector<int64_t>({5, 0, 127, 5}, {2, 2});
  const Tensor y = emb(ids);
  CHECK(y.shape() == Shape{2, 2, 96});
  QTUNE_CHECK_CLOSE(y.select(0, 1).select(0, 0), emb.weight().detach().select(0, 127), 0.0, 1e-300);  // exact
  QTUNE_CHECK_CLOSE(y.select(0, 1).select(0, 1), emb.weight().detach().select(0, 5), 0.0, 1e-300);    // exact
  ops::sum(y).backward();
  const auto g = emb.weight().grad().to_vector<float>();
  CHECK(g[5 * 96] == 2.0f);  // id 5 appears twice
  CHECK(g[127 * 96] == 1.0f);
  CHECK(g[1 * 96] == 0.0f);
  CHECK_THROWS_WITH_AS(emb(Tensor::from_vector<int64_t>({128}, {1})), doctest::Contains("V = 128"), Error);
}

TEST_CASE("RMSNorm: ones init, eps, forward and state_dict") {
  nn::RMSNorm norm(32, {.eps = 1e-5});
  CHECK(names_of(norm) == std::vector<std::string>{"weight"});
  QTUNE_CHECK_CLOSE(norm.weight(), Tensor::ones({32}), 0.0, 1e-300);  // exact
  CHECK(norm.eps() == 1e-5);
  const Tensor x = testing::random_f64({3, 32}, 3).to(DType::f32);
  QTUNE_CHECK_CLOSE(norm(x), ops::rmsnorm(x, Tensor::ones({32}), 1e-5), 0.0, 1e-300);  // exact
  // Loading a state dict changes what forward uses.
  StateDict state{{"weight", Tensor::full({32}, 2.0)}};
  norm.load_state_dict(state);
  QTUNE_CHECK_CLOSE(norm(x), ops::rmsnorm(x, Tensor::full({32}, 2.0), 1e-5), 0.0, 1e-300);  // exact
  CHECK(norm.state_dict().count("weight") == 1);
  norm.to(DType::bf16);
  CHECK(norm(x.to(DType::bf16)).dtype() == DType::bf16);
}

TEST_CASE("modules nest with HF-style dotted names") {
  ModuleList layers;
  layers.append(std::make_shared<nn::Linear>(4, 4));
  layers.append(std::make_shared<nn::RMSNorm>(4));
  layers.append(std::make_shared<nn::Embedding>(10, 4));
  CHECK(names_of(layers) == std::vector<std::string>{"0.weight", "0.bias", "1.weight", "2.weight"});
}

TEST_CASE("SkipInitGuard: modules allocate without drawing, nested guards restore the previous state") {
  Generator gen(5);
  nn::Linear::Options linear_options;
  linear_options.generator = &gen;
  nn::Embedding::Options embedding_options;
  embedding_options.generator = &gen;
  CHECK(parameter_init_enabled());
  {
    SkipInitGuard outer;
    {
      SkipInitGuard inner;
      CHECK_FALSE(parameter_init_enabled());
    }
    CHECK_FALSE(parameter_init_enabled());
    nn::Linear linear(16, 8, linear_options);
    nn::Embedding embedding(10, 4, embedding_options);
    CHECK(linear.weight().shape() == Shape{8, 16});
    CHECK(linear.bias().shape() == Shape{8});
    CHECK(embedding.weight().shape() == Shape{10, 4});
    CHECK(gen.offset() == 0);  // nothing was drawn
  }
  CHECK(parameter_init_enabled());
  nn::Linear drawn(16, 8, linear_options);
  CHECK(gen.offset() > 0);
}
