// The backward engine and checkpointing: accumulation, graph release, memory of saved tensors,
// gradients through every view, and checkpointed gradients identical to the plain run.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/checkpoint.h"
#include "engine/rng.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"
#include "ops/reduce.h"
#include "tests/testing.h"

using namespace qtune;

namespace {
size_t allocated() { return memory_stats(Device::cpu()).allocated; }
}  // namespace

TEST_CASE("leaf gradients accumulate across backward calls") {
  Tensor x = Tensor::from_vector<double>({1, -2, 3}, {3}).requires_grad_();
  ops::sum(x * x).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{2, -4, 6});
  const Tensor first = x.grad();
  ops::sum(x * x).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{4, -8, 12});
  x.zero_grad();
  CHECK_FALSE(x.grad().defined());
  ops::sum(x).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{1, 1, 1});
  (void)first;
}

TEST_CASE("a tensor used twice receives the sum of both gradients") {
  Tensor x = Tensor::from_vector<double>({0.5, -1.0}, {2}).requires_grad_();
  ops::sum(x * x + x).backward();  // leaf consumed twice by one node and once by another
  CHECK(x.grad().to_vector<double>() == std::vector<double>{2.0, -1.0});
  x.zero_grad();
  Tensor h = ops::exp(x);  // a non-leaf consumed by two nodes
  ops::sum(h * h + ops::scale(h, 3.0)).backward();
  const auto g = x.grad().to_vector<double>();
  for (int i = 0; i < 2; ++i) {
    const double v = i == 0 ? 0.5 : -1.0;
    CHECK(g[static_cast<size_t>(i)] == doctest::Approx(2 * std::exp(2 * v) + 3 * std::exp(v)).epsilon(1e-14));
  }
}

TEST_CASE("a pass sums a leaf's contributions before adding them to .grad (torch's order)") {
  // bf16 makes the grouping visible: with .grad = 1, a pass contributing 1/256 twice adds their sum 1/128
  // (representable next to 1), where adding them to .grad one by one would round each away.
  Tensor x = Tensor::from_vector<float>({1.0f}, {1}).to(DType::bf16).requires_grad_();
  ops::sum(x).backward();
  CHECK(x.grad().to(DType::f32).item() == 1.0);
  const Tensor c = Tensor::from_vector<float>({1.0f / 256}, {1}).to(DType::bf16);
  ops::sum(x * c + x * c).backward();
  CHECK(x.grad().to(DType::f32).item() == 1.0 + 1.0 / 128);
}

TEST_CASE("several roots run in the order they are given") {
  // Two independent nodes; which runs first decides the order in which a shared leaf's gradients are summed.
  std::vector<std::string> ran;
  Tensor x = Tensor::from_vector<double>({1, 2}, {2}).requires_grad_();
  const auto traced = [&](const std::string& name) {
    const Tensor y = Tensor::from_vector<double>({0, 0}, {2});
    autograd::record(name, {x}, {y}, [&ran, name](const std::vector<Tensor>& grads) {
      ran.push_back(name);
      return grads;
    });
    return y;
  };
  for (int order = 0; order < 2; ++order) {
    std::vector<Tensor> roots;
    for (int i = 0; i < 8; ++i) roots.push_back(traced("node " + std::to_string(i)));
    if (order == 1) std::reverse(roots.begin(), roots.end());
    std::vector<std::string> expected;
    for (int i = 0; i < 8; ++i) expected.push_back("node " + std::to_string(order == 0 ? i : 7 - i));
    ran.clear();
    autograd::backward(roots, std::vector<Tensor>(roots.size(), Tensor::from_vector<double>({1, 1}, {2})));
    CHECK(ran == expected);
  }
}

TEST_CASE("requires_grad propagation, leaves and NoGradGuard") {
  Tensor a = Tensor::ones({2});
  Tensor b = Tensor::ones({2}).requires_grad_();
  CHECK(b.is_leaf());
  CHECK_FALSE((a * a).requires_grad());
  CHECK_FALSE((a * a).grad_fn());
  Tensor c = a * b;
  CHECK(c.requires_grad());
  CHECK_FALSE(c.is_leaf());
  CHECK(c.grad_fn() != nullptr);
  CHECK(c.detach().is_leaf());
  CHECK_FALSE(c.detach().requires_grad());
  CHECK_THROWS_AS(c.requires_grad_(), Error);
  CHECK_THROWS_AS(Tensor::zeros({2}, DType::i32).requires_grad_(), Error);
  {
    NoGradGuard guard;
    CHECK_FALSE(autograd::grad_enabled());
    Tensor d = ops::exp(b) * b;
    CHECK_FALSE(d.requires_grad());
    CHECK(d.grad_fn() == nullptr);
    {
      EnableGradGuard on;
      CHECK(ops::exp(b).requires_grad());
    }
    CHECK_FALSE(autograd::grad_enabled());
  }
  CHECK(autograd::grad_enabled());
  CHECK_THROWS_WITH_AS(ops::sum(a).backward(), doctest::Contains("does not require grad"), Error);
  CHECK_THROWS_WITH_AS((a * b).backward(), doctest::Contains("one-element"), Error);
}

TEST_CASE("an explicit output gradient of another dtype is cast to the output's dtype") {
  Tensor x = Tensor::from_vector<float>({1, 2}, {2}).requires_grad_();
  Tensor y = x * x;
  y.backward(Tensor::from_vector<double>({0.5, -1.0}, {2}));
  CHECK(x.grad().dtype() == DType::f32);
  CHECK(x.grad().to_vector<float>() == std::vector<float>{1.0f, -4.0f});
  CHECK_THROWS_WITH_AS(y.detach().requires_grad_().backward(Tensor::ones({3})), doctest::Contains("gradient shape"),
                       Error);
}

TEST_CASE("a released graph refuses a second backward; retain_graph allows it") {
  Tensor x = Tensor::from_vector<double>({1, 2}, {2}).requires_grad_();
  Tensor y = ops::sum(ops::exp(x));
  y.backward();
  CHECK_THROWS_WITH_AS(y.backward(), doctest::Contains("retain_graph"), Error);

  x.zero_grad();
  Tensor z = ops::sum(ops::exp(x));
  z.backward(Tensor(), /*retain_graph=*/true);
  z.backward();
  const auto g = x.grad().to_vector<double>();
  CHECK(g[0] == doctest::Approx(2 * std::exp(1.0)).epsilon(1e-15));
  CHECK(g[1] == doctest::Approx(2 * std::exp(2.0)).epsilon(1e-15));
}

TEST_CASE("saved tensors are freed as backward runs, and kept by retain_graph") {
  const int64_t n = 1 << 16;  // 256 KiB per f32 activation
  const size_t act = static_cast<size_t>(n) * 4;
  Tensor x = Tensor::full({n}, 0.01).requires_grad_();
  const size_t base = allocated();
  auto forward = [&] {
    Tensor h = x;
    for (int i = 0; i < 8; ++i) h = ops::exp(h) * h;  // each step saves activations
    return ops::sum(h);
  };
  for (bool retain : {false, true}) {
    CAPTURE(retain);
    x.zero_grad();
    Tensor loss = forward();
    const size_t after_forward = allocated();
    CHECK(after_forward >= base + 8 * act);  // the graph holds the saved activations
    loss.backward(Tensor(), retain);
    const size_t after_backward = allocated();
    if (!retain) {
      CHECK(after_backward <= base + act + 4096);  // only x.grad (and the scalar loss) remain
    } else {
      CHECK(after_backward >= after_forward);
    }
    loss = Tensor();
    CHECK(allocated() <= base + act + 4096);  // dropping the root frees a retained graph
  }
}

TEST_CASE("gradients through views, checked by finite differences in f64") {
  Tensor a = testing::random_f64({3, 4, 5}, 11).requires_grad_();
  using X = const std::vector<Tensor>&;
  CHECK(testing::gradcheck([](X x) { return ops::exp(x[0].narrow(1, 1, 2)); }, {a}) <= 1.0);
  CHECK(testing::gradcheck([](X x) { return ops::exp(x[0].narrow(2, -3, 3)); }, {a}) <= 1.0);
  CHECK(testing::gradcheck([](X x) { return ops::exp(x[0].select(2, 4)); }, {a}) <= 1.0);
  CHECK(testing::gradcheck([](X x) { return ops::exp(x[0].permute({2, 0, 1})); }, {a}) <= 1.0);
  CHECK(testing::gradcheck([](X x) { return ops::exp(x[0].transpose(0, 2).reshape({5, 12})); }, {a}) <= 1.0);
  CHECK(testing::gradcheck([](X x) { return ops::exp(x[0].view({12, 5})); }, {a}) <= 1.0);
  CHECK(testing::gradcheck([](X x) { return ops::exp(x[0].flatten(1).unsqueeze(0).squeeze(0)); }, {a}) <= 1.0);
  CHECK(testing::gradcheck([](X x) { return x[0].transpose(1, 2).contiguous() * x[0].transpose(1, 2); }, {a}) <= 1.0);
  Tensor b = testing::random_f64({4, 1}, 12).requires_grad_();
  CHECK(testing::gradcheck([](X x) { return ops::exp(x[0].expand({3, 4, 6})); }, {b}) <= 1.0);
  CHECK(testing::gradcheck([](X x) { return ops::exp(x[0].unsqueeze(0).expand({2, -1, 3}).clone()); }, {b}) <= 1.0);
  // A view of a view of a view, consumed twice.
  CHECK(testing::gradcheck(
            [](X x) {
              Tensor v = x[0].permute({1, 0, 2}).narrow(0, 1, 3).select(2, 1);
              return v * v.transpose(0, 1).contiguous().transpose(0, 1);
            },
            {a}) <= 1.0);
}

TEST_CASE("to(dtype) passes gradients back in the source dtype") {
  Tensor x = testing::random_f64({6}, 13).requires_grad_();
  const std::vector<double> w{1, -2, 0.5, 4, 0.25, -8};  // exact in every float dtype
  for (DType mid : {DType::f32, DType::bf16, DType::f16}) {
    CAPTURE(dtype_name(mid));
    x.zero_grad();
    Tensor y = ops::sum(x.to(mid) * Tensor::from_doubles(w, {6}, mid));
    CHECK(y.dtype() == mid);
    y.backward();
    CHECK(x.grad().dtype() == DType::f64);
    CHECK(x.grad().to_vector<double>() == w);
  }
  CHECK_FALSE(x.to(DType::i32).requires_grad());  // integer casts end the graph
}

namespace {
// A block of an MLP-like chain: x -> x * exp(0.1 * x @ W).
Tensor block(const Tensor& x, const Tensor& w) { return ops::mul(ops::exp(ops::scale(ops::matmul(x, w), 0.1)), x); }

struct ChainResult {
  std::vector<std::vector<float>> grads;
  size_t peak = 0;
};

ChainResult run_chain(int depth, int64_t rows, int64_t width, bool use_checkpoint) {
  Generator gen(99);
  std::vector<Tensor> weights;
  for (int i = 0; i < depth; ++i)
    weights.push_back(rand({width, width}, DType::f32, Device::cpu(), &gen, -0.3, 0.3).requires_grad_());
  Tensor x = rand({rows, width}, DType::f32, Device::cpu(), &gen, -1.0, 1.0).requires_grad_();
  reset_peak_memory(Device::cpu());
  {
    Tensor h = x;
    for (int i = 0; i < depth; ++i) {
      const Tensor w = weights[static_cast<size_t>(i)];
      if (use_checkpoint)
        h = checkpoint([w](const std::vector<Tensor>& in) { return std::vector<Tensor>{block(in[0], w)}; }, {h})[0];
      else
        h = block(h, w);
    }
    ops::sum(ops::square(h)).backward();
  }
  ChainResult r;
  r.peak = memory_stats(Device::cpu()).peak_allocated;
  r.grads.push_back(x.grad().to_vector<float>());
  for (const Tensor& w : weights) r.grads.push_back(w.grad().to_vector<float>());
  return r;
}
}  // namespace

TEST_CASE("checkpointed gradients are bit-identical to the plain run") {
  const ChainResult plain = run_chain(3, 8, 16, false);
  const ChainResult ckpt = run_chain(3, 8, 16, true);
  REQUIRE(plain.grads.size() == ckpt.grads.size());
  for (size_t i = 0; i < plain.grads.size(); ++i) {
    CAPTURE(i);
    CHECK(plain.grads[i] == ckpt.grads[i]);
  }
}

TEST_CASE("checkpointing lowers peak memory on a long chain") {
  const ChainResult plain = run_chain(12, 1024, 128, false);
  const ChainResult ckpt = run_chain(12, 1024, 128, true);
  const size_t act = 1024 * 128 * 4;
  MESSAGE("peak plain ", plain.peak, " checkpointed ", ckpt.peak, " activation ", act);
  // The plain run keeps two activations per block (exp's output and the block input) until
  // backward; the checkpointed one keeps only the block inputs, plus one block's worth while it
  // is recomputed.
  CHECK(ckpt.peak + 8 * act < plain.peak);
  for (size_t i = 0; i < plain.grads.size(); ++i) CHECK(plain.grads[i] == ckpt.grads[i]);
}

TEST_CASE("checkpoint replays randomness from the default generator") {
  Tensor x = Tensor::full({64}, 2.0).requires_grad_();
  auto noisy = [](const std::vector<Tensor>& in) {
    return std::vector<Tensor>{ops::mul(in[0], rand(in[0].shape()))};  // a dropout-like random mask
  };
  manual_seed(5);
  Tensor y = checkpoint(noisy, {x})[0];
  const uint64_t offset_after_forward = default_generator().offset();
  rand({100});  // later draws must not leak into the recomputation
  const uint64_t offset_before_backward = default_generator().offset();
  ops::sum(y).backward();
  CHECK(default_generator().offset() == offset_before_backward);  // restored after the replay
  manual_seed(5);
  const auto mask = rand({64}).to_vector<float>();
  CHECK(default_generator().offset() == offset_after_forward);
  CHECK(x.grad().to_vector<float>() == mask);  // d(x * mask)/dx: the same mask was drawn again
  const auto yv = y.to_vector<float>();
  for (size_t i = 0; i < mask.size(); ++i) CHECK(yv[i] == 2.0f * mask[i]);
}

TEST_CASE("checkpoint: inputs without grad, several outputs, grad mode off") {
  Tensor w = Tensor::full({3}, 2.0).requires_grad_();
  Tensor x = Tensor::from_vector<float>({1, 2, 3}, {3});  // no grad: w receives its gradient anyway
  auto fn = [w](const std::vector<Tensor>& in) { return std::vector<Tensor>{ops::mul(in[0], w), ops::exp(in[0])}; };
  auto outs = checkpoint(fn, {x});
  REQUIRE(outs.size() == 2);
  ops::sum(outs[0]).backward();
  CHECK(w.grad().to_vector<float>() == std::vector<float>{1, 2, 3});
  {
    NoGradGuard off;
    auto plain = checkpoint(fn, {x});
    CHECK_FALSE(plain[0].requires_grad());
  }
}

TEST_CASE("checkpoint: a non-leaf weight read by several checkpointed blocks") {
  // w2 = 3 * W is computed once outside (a weight cast, a tied weight) and read by two
  // checkpointed blocks; each recomputation backpropagates into W through w2's node, so the first
  // must not free it. Captured, it works when nothing outside the blocks uses w2; passed as an
  // input it works in every case.
  auto run = [](int mode) {  // 0 plain, 1 captured, 2 passed as an input and also used outside
    Tensor W = Tensor::from_vector<double>({0.2, -0.05, 0.125}, {3}).requires_grad_();
    Tensor x = Tensor::from_vector<double>({0.1, 0.3, -0.2}, {3}).requires_grad_();
    Tensor w2 = ops::scale(W, 3.0);
    auto captured = [w2](const std::vector<Tensor>& in) { return std::vector<Tensor>{ops::exp(ops::mul(in[0], w2))}; };
    auto as_input = [](const std::vector<Tensor>& in) { return std::vector<Tensor>{ops::exp(ops::mul(in[0], in[1]))}; };
    Tensor h = x;
    for (int i = 0; i < 2; ++i) {
      if (mode == 0) h = captured({h})[0];
      if (mode == 1) h = checkpoint(captured, {h})[0];
      if (mode == 2) h = checkpoint(as_input, {h, w2})[0];
    }
    Tensor loss = ops::sum(h);
    if (mode != 1) loss = ops::sum(ops::mul(h, w2));
    loss.backward();
    return std::make_pair(W.grad().to_vector<double>(), x.grad().to_vector<double>());
  };
  auto plain_without_outside_use = [&] {
    Tensor W = Tensor::from_vector<double>({0.2, -0.05, 0.125}, {3}).requires_grad_();
    Tensor x = Tensor::from_vector<double>({0.1, 0.3, -0.2}, {3}).requires_grad_();
    Tensor w2 = ops::scale(W, 3.0);
    Tensor h = x;
    for (int i = 0; i < 2; ++i) h = ops::exp(ops::mul(h, w2));
    ops::sum(h).backward();
    return std::make_pair(W.grad().to_vector<double>(), x.grad().to_vector<double>());
  };
  // W's gradient arrives in pieces (one per recomputation), so only the summation order differs.
  auto check_close = [](const std::vector<double>& a, const std::vector<double>& b) {
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i) CHECK(a[i] == doctest::Approx(b[i]).epsilon(1e-13));
  };
  std::pair<std::vector<double>, std::vector<double>> got;
  REQUIRE_NOTHROW(got = run(1));
  const auto want1 = plain_without_outside_use();
  check_close(got.first, want1.first);
  check_close(got.second, want1.second);
  REQUIRE_NOTHROW(got = run(2));
  const auto want2 = run(0);
  check_close(got.first, want2.first);
  check_close(got.second, want2.second);
}
