// Fused cross-entropy with ignore_index: f64 gradient checks for [N, V] and [B, T, V], PyTorch
// goldens in f64 and f32, the all-ignored case, output dtypes and bad-target errors; the per-position
// variant that evaluation sums.
#include <cmath>

#include "engine/autograd.h"
#include "ops/cross_entropy.h"
#include "ops/elementwise.h"
#include "ops/softmax.h"
#include "tests/testing.h"

using namespace qtune;

TEST_CASE("cross_entropy gradients (f64 finite differences)") {
  const Tensor t2 = Tensor::from_vector<int64_t>({2, -100, 0, 4}, {4});
  Tensor l2 = testing::random_f64({4, 5}, 1, -3.0, 3.0).requires_grad_();
  CHECK(testing::gradcheck([&](auto& x) { return ops::cross_entropy(x[0], t2); }, {l2}) <= 1.0);
  const Tensor t3 = Tensor::from_vector<int64_t>({1, 3, -100, 0, 0, 2}, {2, 3});
  Tensor l3 = testing::random_f64({2, 3, 4}, 2, -3.0, 3.0).requires_grad_();
  CHECK(testing::gradcheck([&](auto& x) { return ops::cross_entropy(x[0], t3); }, {l3}) <= 1.0);
  // A custom ignore_index leaves -100 as an ordinary (here out of range) value, so use 1 instead.
  const Tensor t4 = Tensor::from_vector<int64_t>({1, 3, 0}, {3});
  Tensor l4 = testing::random_f64({3, 4}, 3, -3.0, 3.0).requires_grad_();
  CHECK(testing::gradcheck([&](auto& x) { return ops::cross_entropy(x[0], t4, 1); }, {l4}) <= 1.0);
}

TEST_CASE("cross_entropy matches PyTorch (f64 and f32)") {
  auto golden = testing::load_golden("ops_b.json");
  for (const char* name : {"ce_2d", "ce_3d"}) {
    CAPTURE(std::string(name));
    testing::GoldenCase& c = golden.at(name);
    for (DType dt : {DType::f64, DType::f32, DType::bf16}) {
      CAPTURE(dtype_name(dt));
      const double rtol = dt == DType::f64 ? 1e-12 : (dt == DType::f32 ? 1e-5 : 2e-2);
      const double atol = dt == DType::f64 ? 1e-13 : (dt == DType::f32 ? 1e-6 : 2e-2);
      Tensor logits = c["logits"].detach().to(dt).requires_grad_();
      Tensor loss = ops::cross_entropy(logits, c["targets"]);
      CHECK(loss.dim() == 0);
      CHECK(loss.dtype() == (dt == DType::f64 ? DType::f64 : DType::f32));
      ops::mul(loss, c["w"].to(loss.dtype())).backward();
      CHECK(logits.grad().dtype() == dt);
      // bf16 logits are rounded before the loss, so that path is compared against rounded inputs' loss.
      QTUNE_CHECK_CLOSE(loss, c["out"], rtol, dt == DType::bf16 ? 5e-2 : atol);
      QTUNE_CHECK_CLOSE(logits.grad(), c["grad_logits"], rtol, atol);
    }
  }
}

TEST_CASE("cross_entropy over a 1000-word vocabulary (16-lane sums with a tail) stays close to f64") {
  // 1000 = 62 blocks of 16 and a tail of 8; the f32 and bf16 kernels against f64 on the same rounded logits.
  const Tensor targets = Tensor::from_vector<int64_t>({3, 999, -100, 512, 0, 17}, {6});
  const Tensor w = testing::random_f64({}, 5, 0.5, 1.5);
  for (DType dt : {DType::f32, DType::bf16}) {
    CAPTURE(dtype_name(dt));
    Tensor logits = testing::random_f64({6, 1000}, 6, -8.0, 8.0).to(dt).requires_grad_();
    Tensor exact = logits.detach().to(DType::f64).requires_grad_();
    Tensor loss = ops::cross_entropy(logits, targets), loss_exact = ops::cross_entropy(exact, targets);
    ops::mul(loss, w.to(loss.dtype())).backward();
    ops::mul(loss_exact, w).backward();
    QTUNE_CHECK_CLOSE(loss.to(DType::f64), loss_exact, 1e-6, 1e-6);
    // Gradients are rounded to the logits' dtype once.
    const double rtol = dt == DType::f32 ? 1e-5 : 8e-3, atol = dt == DType::f32 ? 1e-9 : 1e-6;
    QTUNE_CHECK_CLOSE(logits.grad().to(DType::f64), exact.grad(), rtol, atol);
  }
}

TEST_CASE("cross_entropy with every position ignored is zero, with zero gradients") {
  Tensor logits = testing::random_f64({3, 4}, 4).requires_grad_();
  Tensor loss = ops::cross_entropy(logits, Tensor::full({3}, -100, DType::i64));
  CHECK(loss.item() == 0.0);
  loss.backward();
  for (double g : logits.grad().to_vector<double>()) CHECK(g == 0.0);
}

TEST_CASE("cross_entropy rejects bad targets and shapes") {
  Tensor logits = Tensor::zeros({2, 7});
  CHECK_THROWS_WITH_AS(ops::cross_entropy(logits, Tensor::from_vector<int64_t>({1, 9}, {2})),
                       doctest::Contains("target 9 at row 1 is out of range for V = 7"), Error);
  CHECK_THROWS_WITH_AS(ops::cross_entropy(logits, Tensor::from_vector<int64_t>({-1, 0}, {2})),
                       doctest::Contains("target -1"), Error);
  CHECK_THROWS_WITH_AS(ops::cross_entropy(logits, Tensor::from_vector<int64_t>({1, 2, 3}, {3})),
                       doctest::Contains("do not match logits"), Error);
  CHECK_THROWS_WITH_AS(ops::cross_entropy(logits, Tensor::from_vector<int32_t>({1, 2}, {2})),
                       doctest::Contains("targets must be i64"), Error);
}

TEST_CASE("cross_entropy_per_position: -log_softmax at each target, 0 where ignored, no autograd") {
  const Tensor targets = Tensor::from_vector<int64_t>({1, 3, -100, 0, 4, 2}, {2, 3});
  for (DType dt : {DType::f64, DType::f32}) {
    CAPTURE(dtype_name(dt));
    Tensor logits = testing::random_f64({2, 3, 5}, 4, -3.0, 3.0).to(dt).requires_grad_();
    const Tensor per = ops::cross_entropy_per_position(logits, targets);
    CHECK(per.shape() == targets.shape());
    CHECK(per.dtype() == dt);
    CHECK_FALSE(per.requires_grad());
    const auto lsm = ops::log_softmax(logits.detach().to(DType::f64)).to_vector<double>();
    const auto tg = targets.to_vector<int64_t>();
    const auto got = per.to_vector<double>();
    double sum = 0.0;
    for (size_t i = 0; i < tg.size(); ++i) {
      CAPTURE(i);
      const double expected = tg[i] == -100 ? 0.0 : -lsm[i * 5 + static_cast<size_t>(tg[i])];
      CHECK(got[i] == doctest::Approx(expected).epsilon(dt == DType::f64 ? 1e-12 : 1e-6));
      sum += got[i];
    }
    // The mean over the counted positions is what cross_entropy returns.
    CHECK(ops::cross_entropy(logits, targets).item() == doctest::Approx(sum / 5).epsilon(1e-6));
  }
  CHECK_THROWS_WITH_AS(ops::cross_entropy_per_position(Tensor::zeros({2, 5}), Tensor::from_vector<int64_t>({0}, {1})),
                       doctest::Contains("do not match logits"), Error);
}
