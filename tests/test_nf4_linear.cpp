// quant::linear_nf4 and FrozenNF4Linear: torchao 0.18's linear_nf4 forward and backward (goldens from
// tools/goldens/gen_nf4.py), a dense reference over the dequantized weight, the tiled path, and memory
// statistics showing that no dense copy of the weight lives between forward and backward.
#include <doctest/doctest.h>

#include <memory>
#include <string>

#include "engine/allocator.h"
#include "engine/autograd.h"
#include "engine/io/safetensors.h"
#include "ops/matmul.h"
#include "ops/nn/linear.h"
#include "ops/reduce.h"
#include "quant/frozen_nf4_linear.h"
#include "quant/linear_nf4.h"
#include "tests/testing.h"

using namespace qtune;
using qtune::testing::random_f64;
using quant::NF4Tensor;

namespace {

// y and grad_x of linear_nf4 for x and grad_y.
std::pair<Tensor, Tensor> run(const Tensor& x_value, const NF4Tensor& w, const Tensor& grad_y) {
  Tensor x = x_value.clone().requires_grad_(true);
  const Tensor y = quant::linear_nf4(x, w);
  y.backward(grad_y);
  return {y.detach(), x.grad()};
}

// The same through ops::linear on the whole dequantized weight.
std::pair<Tensor, Tensor> dense(const Tensor& x_value, const NF4Tensor& w, const Tensor& grad_y) {
  Tensor x = x_value.clone().requires_grad_(true);
  const Tensor y = ops::linear(x, w.dequantize(x.dtype()));
  y.backward(grad_y);
  return {y.detach(), x.grad()};
}

}  // namespace

TEST_CASE("linear_nf4 matches torchao's forward and backward") {
  const io::SafetensorsFile f = io::SafetensorsFile::open(std::string(QTUNE_GOLDEN_DIR) + "/nf4/linear.safetensors");
  for (const std::string tag : {"f32", "bf16"}) {
    CAPTURE(tag);
    const NF4Tensor w = NF4Tensor::quantize(f.tensor(tag + "_w"));
    const auto [y, gx] = run(f.tensor(tag + "_x"), w, f.tensor(tag + "_grad_y"));
    CHECK(y.dtype() == w.dtype());
    CHECK(y.shape() == Shape{4, 3, 64});
    CHECK(gx.shape() == Shape{4, 3, 256});
    // Same products, other summation orders (and torch's bf16 GEMM rounds its own way).
    const double rtol = tag == "f32" ? 1e-5 : 2e-2, atol = tag == "f32" ? 1e-5 : 2e-2;
    QTUNE_CHECK_CLOSE(y.to(DType::f64), f.tensor(tag + "_y").to(DType::f64), rtol, atol);
    QTUNE_CHECK_CLOSE(gx.to(DType::f64), f.tensor(tag + "_grad_x").to(DType::f64), rtol, atol);
  }
}

TEST_CASE("linear_nf4 gradient check in f64 (the weight dequantized to f64)") {
  const NF4Tensor w = NF4Tensor::quantize(random_f64({5, 70}, 18).to(DType::f32));
  const Tensor x = random_f64({2, 3, 70}, 19).requires_grad_(true);
  const double worst =
      qtune::testing::gradcheck([&](const std::vector<Tensor>& in) { return quant::linear_nf4(in[0], w); }, {x});
  CHECK(worst <= 1.0);
}

TEST_CASE("linear_nf4 over several tiles equals the dense linear on the dequantized weight") {
  // 600 x 8192 = 4.9M elements: two tiles of rows (512 + 88).
  const int64_t out = 600, in = 8192;
  REQUIRE(out * in > quant::kNF4TileElements);
  const NF4Tensor w = NF4Tensor::quantize(random_f64({out, in}, 11, -0.05, 0.05).to(DType::f32));
  const Tensor x = random_f64({2, 5, in}, 12).to(DType::f32), gy = random_f64({2, 5, out}, 13).to(DType::f32);
  const auto [y, gx] = run(x, w, gy);
  const auto [y_ref, gx_ref] = dense(x, w, gy);
  QTUNE_CHECK_CLOSE(y, y_ref, 1e-5, 1e-6);
  QTUNE_CHECK_CLOSE(gx, gx_ref, 1e-5, 1e-6);
}

TEST_CASE("no dense copy of the weight is alive between forward and backward") {
  const int64_t out = 2048, in = 4096, tokens = 8;
  const size_t dense_bytes = out * in * sizeof(float);
  const NF4Tensor w = NF4Tensor::quantize(random_f64({out, in}, 14, -0.05, 0.05).to(DType::f32));
  Tensor x = random_f64({tokens, in}, 15).to(DType::f32).requires_grad_(true);
  const Tensor gy = random_f64({tokens, out}, 16).to(DType::f32);
  const size_t base = memory_stats(Device::cpu()).allocated;
  reset_peak_memory(Device::cpu());
  Tensor y = quant::linear_nf4(x, w);
  const MemoryStats after_forward = memory_stats(Device::cpu());
  // Only y outlives the forward: the node saves the NF4 weight alone (not x, not a dense weight).
  CHECK(after_forward.allocated - base == y.nbytes());
  // The forward's scratch holds one tile of rows, half the dense weight here.
  CHECK(after_forward.peak_allocated - base < dense_bytes);
  y.backward(gy);
  CHECK(memory_stats(Device::cpu()).peak_allocated - base < dense_bytes);
  REQUIRE(x.grad().defined());
  CHECK(x.grad().shape() == Shape{tokens, in});
}

TEST_CASE("FrozenNF4Linear: from an nn::Linear, frozen, bias kept; the conversion pass") {
  nn::Linear lin(96, 40);
  const Tensor x = random_f64({3, 96}, 17).to(DType::f32);
  quant::FrozenNF4Linear q(lin);
  CHECK(q.in_features() == 96);
  CHECK(q.out_features() == 40);
  CHECK(q.trainable_parameters().empty());
  CHECK(q.state_dict().count("bias") == 1);
  CHECK(q.state_dict().size() == 1);  // the NF4 parts are non-persistent buffers
  const Tensor y = q(x);
  QTUNE_CHECK_CLOSE(y, ops::linear(x, q.weight().dequantize(), lin.bias().detach()), 1e-6, 1e-6);
  // The NF4 weight is near the dense one (4 bits per weight).
  QTUNE_CHECK_CLOSE(q.weight().dequantize(), lin.weight().detach(), 0.0, 0.02);

  struct Net : Module {
    ModulePtr a = std::make_shared<nn::Linear>(8, 8), b = std::make_shared<nn::Linear>(8, 4);
    Net() : Module("Net") {
      register_module("a", &a);
      register_module("b", &b);
    }
  } net;
  CHECK(quant::convert_to_nf4(net, [](const Module&, std::string_view fqn) { return fqn == "a"; }) == 1);
  CHECK(net.a->type_name() == "FrozenNF4Linear");
  CHECK(net.b->type_name() == "Linear");
}
