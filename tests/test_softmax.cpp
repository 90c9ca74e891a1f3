// softmax / log_softmax: f64 gradient checks over the last and other dims, PyTorch goldens (including
// a row whose naive exp overflows), and reduced-precision rows.
#include "engine/autograd.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"
#include "ops/softmax.h"
#include "tests/testing.h"

using namespace qtune;

TEST_CASE("softmax and log_softmax gradients (f64 finite differences)") {
  Tensor x = testing::random_f64({3, 5}, 1, -3.0, 3.0).requires_grad_();
  CHECK(testing::gradcheck([](auto& in) { return ops::softmax(in[0]); }, {x}) <= 1.0);
  CHECK(testing::gradcheck([](auto& in) { return ops::log_softmax(in[0]); }, {x}) <= 1.0);
  Tensor y = testing::random_f64({3, 4, 2}, 2, -3.0, 3.0).requires_grad_();
  CHECK(testing::gradcheck([](auto& in) { return ops::softmax(in[0], 0); }, {y}) <= 1.0);
  CHECK(testing::gradcheck([](auto& in) { return ops::log_softmax(in[0], 1); }, {y}) <= 1.0);
}

TEST_CASE("softmax and log_softmax match PyTorch") {
  auto golden = testing::load_golden("ops_b.json");
  struct Case {
    const char* name;
    bool log;
    int64_t dim;
  };
  for (const Case& cs : {Case{"softmax_last", false, -1}, Case{"log_softmax_last", true, -1},
                         Case{"softmax_dim0", false, 0}, Case{"log_softmax_dim1", true, 1}}) {
    CAPTURE(std::string(cs.name));
    testing::GoldenCase& c = golden.at(cs.name);
    for (DType dt : {DType::f64, DType::f32}) {
      const double rtol = dt == DType::f64 ? 1e-12 : 2e-5, atol = dt == DType::f64 ? 1e-13 : 1e-6;
      Tensor x = c["x"].detach().to(dt).requires_grad_();
      Tensor out = cs.log ? ops::log_softmax(x, cs.dim) : ops::softmax(x, cs.dim);
      ops::sum(ops::mul(out, c["w"].to(dt))).backward();
      QTUNE_CHECK_CLOSE(out, c["out"], rtol, atol);
      QTUNE_CHECK_CLOSE(x.grad(), c["grad_x"], rtol, atol);
    }
  }
}

TEST_CASE("softmax in bf16 stays within one bf16 rounding of the exact result") {
  auto golden = testing::load_golden("ops_b.json");
  testing::GoldenCase& c = golden.at("softmax_last");
  const Tensor x = c["x"].to(DType::bf16);
  Tensor out = ops::softmax(x);
  CHECK(out.dtype() == DType::bf16);
  // Against f64 softmax of the same (rounded) inputs: half a bf16 ulp is 2^-9 relative, and f32
  // arithmetic adds far less than the other half.
  QTUNE_CHECK_CLOSE(out, ops::softmax(x.to(DType::f64)), 1.0 / 256, 1e-30);
}

TEST_CASE("softmax rejects non-floating input") {
  CHECK_THROWS_WITH_AS(ops::softmax(Tensor::arange(4)), doctest::Contains("needs a floating tensor"), Error);
}
