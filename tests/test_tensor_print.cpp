// Printing, error messages of bad views and reshapes, fills, the CUDA refusal on a CPU build, and
// a randomized check of view() against a brute-force reference.
#include <cmath>
#include <random>

#include "engine/autograd.h"
#include "tests/testing.h"

using namespace qtune;

TEST_CASE("str() of small, large, integer, bool and scalar tensors") {
  CHECK(Tensor::arange(6).to(DType::f32).reshape({2, 3}).str() ==
        "Tensor(shape=[2, 3], dtype=f32, device=cpu)\n[[0, 1, 2],\n [3, 4, 5]]");
  CHECK(Tensor::arange(20).str() == "Tensor(shape=[20], dtype=i64, device=cpu)\n[0, 1, 2, ..., 17, 18, 19]");
  CHECK(Tensor::arange(64).to(DType::i32).reshape({8, 8}).str() ==
        "Tensor(shape=[8, 8], dtype=i32, device=cpu)\n"
        "[[0, 1, 2, ..., 5, 6, 7],\n [8, 9, 10, ..., 13, 14, 15],\n [16, 17, 18, ..., 21, 22, 23],\n ...,\n"
        " [40, 41, 42, ..., 45, 46, 47],\n [48, 49, 50, ..., 53, 54, 55],\n [56, 57, 58, ..., 61, 62, 63]]");
  CHECK(Tensor::scalar(2.5).str() == "Tensor(shape=[], dtype=f32, device=cpu)\n2.5");
  CHECK(Tensor::from_vector<float>({0.5f, -1e10f}, {2}).str() ==
        "Tensor(shape=[2], dtype=f32, device=cpu)\n[0.5, -1e+10]");
  const bool flags[2] = {true, false};
  CHECK(Tensor::from_data(flags, {2}, DType::boolean).str() ==
        "Tensor(shape=[2], dtype=bool, device=cpu)\n[true, false]");
  CHECK(Tensor::zeros({2, 0}).str() == "Tensor(shape=[2, 0], dtype=f32, device=cpu)\n[[],\n []]");
  CHECK(Tensor::ones({1}).requires_grad_().str() == "Tensor(shape=[1], dtype=f32, device=cpu, requires_grad)\n[1]");
  CHECK(Tensor().str() == "Tensor(undefined)");
  CHECK(Tensor::scalar(1e12, DType::i64).str() == "Tensor(shape=[], dtype=i64, device=cpu)\n1000000000000");
  CHECK(Tensor::from_vector<int64_t>({(int64_t{1} << 53) + 1, -7}, {2}).str() ==
        "Tensor(shape=[2], dtype=i64, device=cpu)\n[9007199254740993, -7]");
  CHECK(Tensor::scalar(1, DType::boolean).str() == "Tensor(shape=[], dtype=bool, device=cpu)\ntrue");
  // A strided view prints its logical values.
  CHECK(Tensor::arange(4).reshape({2, 2}).transpose(0, 1).str() ==
        "Tensor(shape=[2, 2], dtype=i64, device=cpu)\n[[0, 2],\n [1, 3]]");
}

TEST_CASE("fill_ and full cast the value as torch.full does") {
  // torch.full((3,), 0.7, dtype=torch.bool) -> all True; int dtypes truncate toward zero.
  CHECK(Tensor::full({3}, 0.7, DType::boolean).to_vector<uint8_t>() == std::vector<uint8_t>{1, 1, 1});
  CHECK(Tensor::full({2}, -0.2, DType::boolean).to_vector<uint8_t>() == std::vector<uint8_t>{1, 1});
  CHECK(Tensor::full({2}, NAN, DType::boolean).to_vector<uint8_t>() == std::vector<uint8_t>{1, 1});
  CHECK(Tensor::full({2}, 0.0, DType::boolean).to_vector<uint8_t>() == std::vector<uint8_t>{0, 0});
  CHECK(Tensor::full({2}, 2.9, DType::i32).to_vector<int32_t>() == std::vector<int32_t>{2, 2});
  CHECK(Tensor::full({2}, -2.9, DType::i8).to_vector<int8_t>() == std::vector<int8_t>{-2, -2});
  Tensor t = Tensor::zeros({3, 4});
  t.transpose(0, 1).narrow(0, 1, 2).fill_(5.0);  // a strided fill touches only its view
  CHECK(t.to_vector<float>() == std::vector<float>{0, 5, 5, 0, 0, 5, 5, 0, 0, 5, 5, 0});
}

TEST_CASE("bad views, reshapes and ranges fail with messages that name the problem") {
  const Tensor t = Tensor::zeros({2, 3});
  CHECK_THROWS_WITH_AS(t.narrow(1, 2, 2), doctest::Contains("narrow: [2, 4) is out of range for dim 1 of size 3"),
                       Error);
  CHECK_THROWS_WITH_AS(t.narrow(0, -3, 1), doctest::Contains("out of range"), Error);
  CHECK_THROWS_WITH_AS(t.narrow(0, 0, -1), doctest::Contains("out of range"), Error);
  CHECK_THROWS_WITH_AS(t.view({4}), doctest::Contains("[2, 3] (6 elements) to [4]"), Error);
  CHECK_THROWS_WITH_AS(t.reshape({-1, -1}), doctest::Contains("only one dim may be -1"), Error);
  CHECK_THROWS_WITH_AS(t.reshape({4, -1}), doctest::Contains("cannot reshape [2, 3] to [4, -1]"), Error);
  CHECK_THROWS_WITH_AS(t.reshape({-2, 3}), doctest::Contains("negative size"), Error);
  CHECK_THROWS_WITH_AS(t.transpose(0, 1).view({6}), doctest::Contains("use reshape()"), Error);
  CHECK_THROWS_WITH_AS(t.select(0, 2), doctest::Contains("index 2 out of range for dim 0 of size 2"), Error);
  CHECK_THROWS_WITH_AS(t.select(0, -3), doctest::Contains("out of range"), Error);
  CHECK_THROWS_WITH_AS(t.expand({4, 3, 2}), doctest::Contains("cannot expand shape [2, 3] to [4, 3, 2]"), Error);
  CHECK_THROWS_WITH_AS(t.expand({3}), doctest::Contains("cannot expand"), Error);
  CHECK_THROWS_WITH_AS(t.permute({0, 0}), doctest::Contains("dim 0 repeated"), Error);
  CHECK_THROWS_WITH_AS(t.permute({0}), doctest::Contains("1 dims given for a tensor of rank 2"), Error);
  CHECK_THROWS_WITH_AS(t.transpose(0, 2), doctest::Contains("dim 2 is out of range for a tensor of rank 2"), Error);
  CHECK_THROWS_WITH_AS(t.squeeze(0), doctest::Contains("squeeze: dim 0 has size 2"), Error);
  CHECK_THROWS_WITH_AS(Tensor::zeros({2, 3, 4}).flatten(2, 1), doctest::Contains("flatten: start_dim 2"), Error);
  CHECK(Tensor::zeros({2, 3, 4}).flatten(-2).shape() == Shape{2, 12});
  CHECK(Tensor::zeros({2, 3, 4}).flatten(1, 1).shape() == Shape{2, 3, 4});
  CHECK(Tensor::scalar(3.0).flatten().shape() == Shape{1});
  CHECK_THROWS_WITH_AS(t.copy_(Tensor::zeros({3, 2})), doctest::Contains("copy_"), Error);
  CHECK_THROWS_WITH_AS(t.item(), doctest::Contains("one-element"), Error);
  CHECK_THROWS_WITH_AS(t.data<double>(), doctest::Contains("data<f64>() on a tensor of dtype f32"), Error);
  CHECK_THROWS_WITH_AS(Tensor().shape(), doctest::Contains("undefined tensor"), Error);
  CHECK_THROWS_WITH_AS(Tensor::from_doubles({1, 2, 3}, {2, 2}), doctest::Contains("3 values for shape [2, 2]"), Error);
  CHECK_THROWS_WITH_AS(dtype_from_name("f17"), doctest::Contains("unknown dtype 'f17'"), Error);
  CHECK_THROWS_WITH_AS(parse_device("gpu"), doctest::Contains("bad device 'gpu'"), Error);
  CHECK_THROWS_WITH_AS(parse_device("cuda:"), doctest::Contains("bad device 'cuda:'"), Error);
  CHECK_THROWS_WITH_AS(parse_device("cuda:-1"), doctest::Contains("bad device"), Error);
  CHECK_THROWS_WITH_AS(parse_device("cuda:99999999999"), doctest::Contains("bad device"), Error);
  CHECK(parse_device("cuda:3") == Device::cuda(3));
  CHECK(parse_device("cuda") == Device::cuda(0));
  CHECK(parse_device("cpu").str() == "cpu");
  CHECK(Device::cuda(2).str() == "cuda:2");
}

TEST_CASE("asking for CUDA on a machine without one throws, never falls back") {
  if (cuda_available()) return;  // the CUDA tests own the GPU path
  CHECK_THROWS_WITH_AS(Tensor::zeros({2}).to(Device::cuda()), doctest::Contains("cuda"), Error);
  CHECK_THROWS_AS(Tensor::zeros({2}, DType::f32, Device::cuda()), Error);
  CHECK_THROWS_AS(memory_stats(Device::cuda(1)), Error);
}

namespace {
// Element addresses (storage offsets) of `t` in row-major order of its logical shape.
std::vector<int64_t> addresses(const Shape& shape, const Strides& strides, int64_t offset) {
  std::vector<int64_t> out;
  std::vector<int64_t> idx(shape.size(), 0);
  const int64_t n = numel_of(shape);
  for (int64_t i = 0; i < n; ++i) {
    int64_t a = offset;
    for (size_t d = 0; d < shape.size(); ++d) a += idx[d] * strides[d];
    out.push_back(a);
    for (size_t d = shape.size(); d-- > 0;) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

// Brute force: a view exists iff the row-major address sequence is affine in the new indices.
bool viewable(const Tensor& t, const Shape& new_shape) {
  const std::vector<int64_t> addr = addresses(t.shape(), t.strides(), t.offset());
  Strides st(new_shape.size(), 0);
  int64_t unit = 1;
  for (size_t d = new_shape.size(); d-- > 0;) {
    if (new_shape[d] > 1) st[d] = addr[static_cast<size_t>(unit)] - addr[0];
    unit *= new_shape[d];
  }
  return addresses(new_shape, st, addr[0]) == addr;
}

Shape random_shape_for(int64_t numel, std::mt19937& rng) {
  Shape shape;
  int64_t left = numel;
  for (int64_t f = 2; f <= left;) {
    if (left % f == 0 && rng() % 2) {
      shape.push_back(f);
      left /= f;
    } else if (left % f != 0) {
      ++f;
    } else if (rng() % 3 == 0) {
      ++f;
    }
  }
  if (left > 1) shape.push_back(left);
  std::shuffle(shape.begin(), shape.end(), rng);
  // Merge some neighbours and sprinkle size-1 dims.
  for (size_t i = 0; i + 1 < shape.size(); ++i)
    if (rng() % 3 == 0) shape[i] *= shape[i + 1], shape.erase(shape.begin() + static_cast<long>(i) + 1);
  while (rng() % 3 == 0) shape.insert(shape.begin() + static_cast<long>(rng() % (shape.size() + 1)), 1);
  return shape;
}
}  // namespace

TEST_CASE("view() succeeds exactly when a strided view exists, and reads the right elements") {
  std::mt19937 rng(7);
  int views = 0, refusals = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    Shape base_shape;
    const int rank = 1 + static_cast<int>(rng() % 4);
    for (int d = 0; d < rank; ++d) base_shape.push_back(1 + static_cast<int64_t>(rng() % 4));
    Tensor t = Tensor::arange(numel_of(base_shape)).reshape(base_shape);
    // Random strided layout: permute, narrow, select, unsqueeze+expand.
    for (int step = 0; step < 3; ++step) {
      const int r = static_cast<int>(t.dim());
      switch (rng() % 4) {
        case 0: {
          std::vector<int64_t> perm(static_cast<size_t>(r));
          std::iota(perm.begin(), perm.end(), int64_t{0});
          std::shuffle(perm.begin(), perm.end(), rng);
          t = t.permute(perm);
          break;
        }
        case 1: {
          const int d = static_cast<int>(rng() % static_cast<unsigned>(r));
          const int64_t n = t.size(d);
          const int64_t len = 1 + static_cast<int64_t>(rng() % static_cast<unsigned>(n));
          t = t.narrow(d, static_cast<int64_t>(rng() % static_cast<unsigned>(n - len + 1)), len);
          break;
        }
        case 2:
          if (r > 1) t = t.select(static_cast<int>(rng() % static_cast<unsigned>(r)), 0);
          break;
        case 3: {
          const int d = static_cast<int>(rng() % static_cast<unsigned>(r + 1));
          Shape s = t.unsqueeze(d).shape();
          s[static_cast<size_t>(d)] = 1 + static_cast<int64_t>(rng() % 3);
          t = t.unsqueeze(d).expand(s);
          break;
        }
      }
    }
    const Shape target = random_shape_for(t.numel(), rng);
    CAPTURE(shape_str(t.shape()));
    CAPTURE(shape_str(t.strides()));
    CAPTURE(shape_str(target));
    const std::vector<int64_t> want = t.contiguous().to_vector<int64_t>();
    if (viewable(t, target)) {
      ++views;
      Tensor v;
      REQUIRE_NOTHROW(v = t.view(target));
      REQUIRE(v.storage() == t.storage());
      REQUIRE(v.shape() == target);
      REQUIRE(v.contiguous().to_vector<int64_t>() == want);
    } else {
      ++refusals;
      REQUIRE_THROWS_AS(t.view(target), Error);
      REQUIRE(t.reshape(target).to_vector<int64_t>() == want);
    }
  }
  CHECK(views > 500);
  CHECK(refusals > 500);
}

TEST_CASE("copy_ between two strided layouts and dtypes writes exactly the destination view") {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 300; ++trial) {
    const Shape shape{1 + static_cast<int64_t>(rng() % 4), 1 + static_cast<int64_t>(rng() % 5),
                      1 + static_cast<int64_t>(rng() % 3)};
    // Source: an f64 arange seen through a permutation of a larger tensor, narrowed to `shape`.
    std::vector<int64_t> perm{0, 1, 2};
    std::shuffle(perm.begin(), perm.end(), rng);
    Shape big_src(3);
    for (size_t d = 0; d < 3; ++d) big_src[static_cast<size_t>(perm[d])] = shape[d] + 1;
    Tensor src = Tensor::arange(numel_of(big_src)).to(DType::f64).reshape(big_src).permute(perm);
    for (int d = 0; d < 3; ++d) src = src.narrow(d, 1, shape[static_cast<size_t>(d)]);
    // Destination: a transposed window of a zeroed i32 buffer.
    Tensor buffer = Tensor::zeros({shape[2] + 2, shape[1], shape[0] + 1}, DType::i32);
    Tensor dst = buffer.permute({2, 1, 0}).narrow(0, 1, shape[0]).narrow(2, 2, shape[2]);
    REQUIRE(dst.shape() == shape);
    dst.copy_(src);
    const auto want = src.contiguous().to_vector<int64_t>();
    CHECK(dst.contiguous().to_vector<int64_t>() == want);
    // Everything outside the window is still zero: the sum of the buffer equals the sum copied.
    int64_t copied = 0, total = 0;
    for (int64_t v : want) copied += v;
    for (int64_t v : buffer.to_vector<int64_t>()) total += v;
    CHECK(total == copied);
  }
}
