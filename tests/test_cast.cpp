// ops::cast: rounding to bf16 and f16 equals PyTorch's (ties to even, overflow, subnormals, NaN,
// signed zero) and the gradient flows back through the cast in the source dtype.
#include <cmath>

#include "engine/autograd.h"
#include "ops/cast.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"
#include "tests/testing.h"

using namespace qtune;

TEST_CASE("cast f32 -> bf16 / f16 -> f32 matches PyTorch bit for bit") {
  auto golden = testing::load_golden("ops_b.json");
  testing::GoldenCase& c = golden.at("cast_rounding");
  const Tensor x = ops::cast(c["x"], DType::f32);
  for (auto [dt, name] : {std::pair{DType::bf16, "bf16"}, std::pair{DType::f16, "f16"}}) {
    CAPTURE(std::string(name));
    const Tensor low = ops::cast(x, dt);
    CHECK(low.dtype() == dt);
    const auto got = ops::cast(low, DType::f32).to_vector<double>(), want = c[name].to_vector<double>();
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      const bool same = (std::isnan(got[i]) && std::isnan(want[i])) ||
                        (got[i] == want[i] && std::signbit(got[i]) == std::signbit(want[i]));
      if (!same) FAIL_CHECK("element ", i, ": ", got[i], " vs torch ", want[i]);
    }
  }
}

TEST_CASE("cast gradients") {
  // f64 -> f32 -> f64 is the identity up to f32 rounding; the step is large enough that rounding
  // stays well inside the tolerance.
  Tensor x = testing::random_f64({3, 4}, 1).requires_grad_();
  CHECK(testing::gradcheck([](auto& in) { return ops::cast(ops::cast(ops::square(in[0]), DType::f32), DType::f64); },
                           {x}, 1e-3, 1e-3, 1e-4) <= 1.0);
  // The gradient arriving in bf16 is cast back to f32 exactly (bf16 values are exact in f32).
  Tensor y = testing::random_f64({8}, 2).to(DType::f32).requires_grad_();
  const Tensor w = ops::cast(testing::random_f64({8}, 3), DType::bf16);
  ops::sum(ops::mul(ops::cast(y, DType::bf16), w)).backward();
  CHECK(y.grad().dtype() == DType::f32);
  CHECK(y.grad().to_vector<double>() == w.to_vector<double>());
  CHECK(ops::cast(y, DType::f32).is_same(y));
  // Casting to an integer dtype carries no gradient.
  CHECK_FALSE(ops::cast(y, DType::i32).requires_grad());
}
