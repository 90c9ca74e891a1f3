#include "engine/autograd.h"
#include "engine/rng.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"
#include "ops/reduce.h"
#include "tests/testing.h"

using namespace qtune;

TEST_CASE("factories and metadata") {
  Tensor t = Tensor::zeros({2, 3, 4});
  CHECK(t.numel() == 24);
  CHECK(t.strides() == Strides{12, 4, 1});
  CHECK(t.is_contiguous());
  CHECK(t.nbytes() == 96);
  Tensor a = Tensor::arange(6).to(DType::f32).reshape({2, 3});
  CHECK(a.to_vector<float>() == std::vector<float>{0, 1, 2, 3, 4, 5});
  CHECK_THROWS_WITH_AS(Tensor::empty({2, -1}), doctest::Contains("negative size"), Error);
}

TEST_CASE("views share storage and compose") {
  Tensor a = Tensor::arange(24).to(DType::f32).reshape({2, 3, 4});
  Tensor t = a.transpose(0, 2);  // [4, 3, 2]
  CHECK(t.shape() == Shape{4, 3, 2});
  CHECK_FALSE(t.is_contiguous());
  CHECK(t.storage() == a.storage());
  CHECK(t.contiguous().to_vector<float>()[1] == 12.0f);  // t[0,0,1] = a[1,0,0]
  Tensor n = a.narrow(1, 1, 2);                          // [2, 2, 4]
  CHECK(n.to_vector<float>()[0] == 4.0f);
  Tensor e = Tensor::arange(3).to(DType::f32).reshape({3, 1}).expand({3, 4});
  CHECK(e.stride(1) == 0);
  CHECK(e.contiguous().to_vector<float>()[5] == 1.0f);
  CHECK(a.select(0, 1).shape() == Shape{3, 4});
  CHECK(a.permute({2, 0, 1}).shape() == Shape{4, 2, 3});
  CHECK_THROWS_WITH_AS(a.transpose(0, 1).view({6, 4}), doctest::Contains("use reshape()"), Error);
  CHECK(a.transpose(0, 1).reshape({6, 4}).is_contiguous());
  CHECK(a.view({-1, 4}).shape() == Shape{6, 4});
  CHECK(a.flatten(1).shape() == Shape{2, 12});
}

TEST_CASE("matmul and broadcasting arithmetic") {
  Tensor a = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = Tensor::from_vector<float>({1, 0, 0, 1, 1, 1}, {3, 2});
  CHECK(ops::matmul(a, b).to_vector<float>() == std::vector<float>{4, 5, 10, 11});
  CHECK(ops::matmul(a.transpose(0, 1), b.transpose(0, 1), true, true).to_vector<float>() ==
        std::vector<float>{4, 5, 10, 11});
  Tensor row = Tensor::from_vector<float>({10, 20, 30}, {3});
  CHECK((a + row).to_vector<float>() == std::vector<float>{11, 22, 33, 14, 25, 36});
}

TEST_CASE("gradients of elementwise ops and matmul") {
  Tensor a = testing::random_f64({3, 4}, 1).requires_grad_();
  Tensor b = testing::random_f64({4}, 2).requires_grad_();
  CHECK(testing::gradcheck([](auto& x) { return x[0] * x[1] + x[0] / (x[1] + 3.0); }, {a, b}) <= 1.0);
  Tensor m = testing::random_f64({2, 3, 4}, 3).requires_grad_();
  Tensor w = testing::random_f64({5, 4}, 4).requires_grad_();
  CHECK(testing::gradcheck([](auto& x) { return ops::matmul(x[0], x[1], false, true); }, {m, w}) <= 1.0);
  CHECK(testing::gradcheck([](auto& x) { return ops::matmul(x[0], x[1], true, false); },
                           {m, testing::random_f64({2, 3, 5}, 5).requires_grad_()}) <= 1.0);
  CHECK(testing::gradcheck([](auto& x) { return ops::mean(ops::exp(x[0]), {1}); }, {m}) <= 1.0);
}
