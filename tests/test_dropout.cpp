// Dropout: reproducible masks from (seed, offset), the kept fraction, eval mode, and a backward that
// applies the forward's mask scaled by 1 / (1 - p).
#include <cmath>

#include "engine/autograd.h"
#include "engine/numerics/philox.h"
#include "engine/rng.h"
#include "ops/dropout.h"
#include "ops/elementwise.h"
#include "tests/testing.h"

using namespace qtune;

TEST_CASE("dropout masks are reproducible from the generator state") {
  const Tensor x = Tensor::ones({1000});
  Generator a(42), b(42), c(43);
  const auto ya = ops::dropout(x, 0.5, true, &a).to_vector<float>();
  CHECK(ya == ops::dropout(x, 0.5, true, &b).to_vector<float>());
  CHECK(ya != ops::dropout(x, 0.5, true, &c).to_vector<float>());
  // The generator advanced by ceil(1000 / 4) blocks, so the next call draws a new mask.
  CHECK(a.offset() == numerics::philox_blocks_for_uniform(1000));
  CHECK(ya != ops::dropout(x, 0.5, true, &a).to_vector<float>());
  // The default generator is used when none is passed, and reseeding it repeats the mask.
  manual_seed(42);
  CHECK(ya == ops::dropout(x, 0.5, true).to_vector<float>());
}

TEST_CASE("dropout drops a fraction near p and scales the rest by 1 / (1 - p)") {
  constexpr int64_t n = 200000;
  const double p = 0.3;
  Generator gen(7);
  const Tensor x = testing::random_f64({n}, 5, 1.0, 2.0);
  const auto xv = x.to_vector<double>(), yv = ops::dropout(x, p, true, &gen).to_vector<double>();
  int64_t dropped = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (yv[i] == 0.0) {
      ++dropped;
    } else if (std::fabs(yv[i] - xv[i] / (1 - p)) > 1e-12) {
      FAIL_CHECK("kept element ", i, " is ", yv[i], ", expected ", xv[i] / (1 - p));
    }
  }
  // Binomial std of the fraction is sqrt(p (1 - p) / n) ~ 0.001; allow 5 of them.
  CHECK(std::fabs(static_cast<double>(dropped) / n - p) < 0.005);
}

TEST_CASE("dropout in eval mode or with p = 0 is the identity") {
  Tensor x = testing::random_f64({4, 5}, 6).requires_grad_();
  CHECK(ops::dropout(x, 0.5, false).is_same(x));
  CHECK(ops::dropout(x, 0.0, true).is_same(x));
  CHECK_THROWS_WITH_AS(ops::dropout(x, 1.0, true), doctest::Contains("p must be in [0, 1)"), Error);
}

TEST_CASE("dropout gradient is mask / (1 - p)") {
  const double p = 0.25;
  Generator gen(11);
  Tensor x = testing::random_f64({64, 33}, 7, 0.5, 1.5).requires_grad_();
  Tensor y = ops::dropout(x, p, true, &gen);
  const Tensor g = testing::random_f64({64, 33}, 8);
  y.backward(g);
  const auto yv = y.to_vector<double>(), gv = g.to_vector<double>(), dx = x.grad().to_vector<double>();
  for (size_t i = 0; i < yv.size(); ++i) {
    const double expected = yv[i] != 0.0 ? gv[i] / (1 - p) : 0.0;
    if (std::fabs(dx[i] - expected) > 1e-12) FAIL_CHECK("grad element ", i, " is ", dx[i], ", expected ", expected);
  }
  // Finite differences through a generator recreated per call, so every evaluation sees one mask.
  CHECK(testing::gradcheck(
            [p](auto& in) {
              Generator local(3);
              return ops::dropout(in[0], p, true, &local);
            },
            {testing::random_f64({5, 7}, 9).requires_grad_()}) <= 1.0);
}
