// Ops of ops/elementwise.h, reduce.h, matmul.h, rmsnorm.h, rope.h, activation.h and embedding.h:
// f64 finite-difference gradient checks, PyTorch goldens (tests/golden/ops_a.json, written by
// tools/goldens/gen_ops_a.py) and bad-input errors.
#include <cmath>
#include <functional>
#include <string>
#include <vector>
#if defined(_OPENMP)
#include <omp.h>
#endif

#include "engine/autograd.h"
#include "ops/activation.h"
#include "ops/elementwise.h"
#include "ops/embedding.h"
#include "ops/matmul.h"
#include "ops/reduce.h"
#include "ops/rmsnorm.h"
#include "ops/rope.h"
#include "tests/testing.h"

using namespace qtune;
using testing::GoldenCase;

namespace {

const GoldenCase& golden(const std::string& name) {
  static const auto cases = testing::load_golden("ops_a.json");
  const auto it = cases.find(name);
  REQUIRE_MESSAGE(it != cases.end(), "golden case '", name, "' is missing from ops_a.json");
  return it->second;
}

std::vector<int64_t> dims_of(const GoldenCase& c) { return c.at("dims").to_vector<int64_t>(); }

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

// Runs `fn` on the golden inputs (floating ones cast to `dtype`), compares the output with `out`
// and, when the case has them, the gradients of sum(out * w) with `grad_<input>`.
void check_golden(const std::string& name, const std::vector<std::string>& inputs, const Fn& fn, double rtol,
                  double atol, DType dtype = DType::f64) {
  CAPTURE(name);
  const GoldenCase& c = golden(name);
  std::vector<Tensor> args;
  for (const std::string& in : inputs) {
    const Tensor& t = c.at(in);
    // A fresh copy each run: gradients must not accumulate into the cached golden tensors.
    args.push_back(t.dtype() == DType::f64 ? t.to(dtype).clone().requires_grad_(c.count("grad_" + in) > 0) : t);
  }
  const Tensor out = fn(args);
  CHECK(out.dtype() == dtype);
  QTUNE_CHECK_CLOSE(out.to(DType::f64), c.at("out"), rtol, atol);
  bool any_grad = false;
  for (const std::string& in : inputs) any_grad = any_grad || c.count("grad_" + in) > 0;
  if (!any_grad) return;
  ops::sum(ops::mul(out, c.at("w").to(dtype))).backward();
  for (size_t i = 0; i < inputs.size(); ++i) {
    const auto g = c.find("grad_" + inputs[i]);
    if (g == c.end()) continue;
    CAPTURE(inputs[i]);
    REQUIRE(args[i].grad().defined());
    QTUNE_CHECK_CLOSE(args[i].grad().to(DType::f64), g->second, rtol, atol);
  }
}

Tensor rand_req(const Shape& shape, uint64_t seed, double low = -1.0, double high = 1.0) {
  return testing::random_f64(shape, seed, low, high).requires_grad_();
}

// Gradient check on f64 random inputs of the given shapes.
void check_grad(const Fn& fn, const std::vector<Tensor>& inputs) { CHECK(testing::gradcheck(fn, inputs) <= 1.0); }

// Runs `f`, which must throw a qtune::Error whose message contains every one of `parts`.
void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  std::string message;
  try {
    f();
  } catch (const Error& e) {
    message = e.what();
  }
  REQUIRE_MESSAGE(!message.empty(), "expected a qtune::Error");
  for (const std::string& part : parts)
    CHECK_MESSAGE(message.find(part) != std::string::npos, "'", part, "' not in: ", message);
}

}  // namespace

// ---- elementwise ---------------------------------------------------------------------------------

TEST_CASE("elementwise ops match torch") {
  const double rtol = 1e-12, atol = 1e-14;
  check_golden(
      "add", {"a", "b"}, [](auto& x) { return ops::add(x[0], x[1]); }, rtol, atol);
  check_golden(
      "sub", {"a", "b"}, [](auto& x) { return ops::sub(x[0], x[1]); }, rtol, atol);
  check_golden(
      "mul", {"a", "b"}, [](auto& x) { return ops::mul(x[0], x[1]); }, rtol, atol);
  check_golden(
      "div", {"a", "b"}, [](auto& x) { return ops::div(x[0], x[1]); }, rtol, atol);
  check_golden(
      "exp", {"x"}, [](auto& x) { return ops::exp(x[0]); }, rtol, atol);
  check_golden(
      "log", {"x"}, [](auto& x) { return ops::log(x[0]); }, rtol, atol);
  check_golden(
      "sqrt", {"x"}, [](auto& x) { return ops::sqrt(x[0]); }, rtol, atol);
  check_golden(
      "rsqrt", {"x"}, [](auto& x) { return ops::rsqrt(x[0]); }, rtol, atol);
  check_golden(
      "square", {"x"}, [](auto& x) { return ops::square(x[0]); }, rtol, atol);
  const double exponent = golden("pow").at("exponent").item();
  check_golden(
      "pow", {"x"}, [&](auto& x) { return ops::pow(x[0], exponent); }, rtol, atol);
  const double alpha = golden("scale").at("alpha").item();
  check_golden(
      "scale", {"x"}, [&](auto& x) { return ops::scale(x[0], alpha); }, rtol, atol);
}

TEST_CASE("elementwise gradients (finite differences)") {
  check_grad([](auto& x) { return ops::add(x[0], x[1]); }, {rand_req({3, 4}, 1), rand_req({4}, 2)});
  check_grad([](auto& x) { return ops::sub(x[0], x[1]); }, {rand_req({2, 1, 3}, 3), rand_req({4, 3}, 4)});
  check_grad([](auto& x) { return ops::mul(x[0], x[1]); }, {rand_req({3, 4}, 5), rand_req({3, 1}, 6)});
  check_grad([](auto& x) { return ops::div(x[0], x[1]); }, {rand_req({2, 3}, 7), rand_req({2, 3}, 8, 0.5, 2.0)});
  check_grad([](auto& x) { return ops::exp(x[0]); }, {rand_req({2, 5}, 9)});
  check_grad([](auto& x) { return ops::log(x[0]); }, {rand_req({2, 5}, 10, 0.2, 3.0)});
  check_grad([](auto& x) { return ops::sqrt(x[0]); }, {rand_req({2, 5}, 11, 0.2, 3.0)});
  check_grad([](auto& x) { return ops::rsqrt(x[0]); }, {rand_req({2, 5}, 12, 0.2, 3.0)});
  check_grad([](auto& x) { return ops::square(x[0]); }, {rand_req({2, 5}, 13)});
  check_grad([](auto& x) { return ops::pow(x[0], 2.5); }, {rand_req({2, 5}, 14, 0.2, 3.0)});
  check_grad([](auto& x) { return ops::scale(x[0], -1.75); }, {rand_req({2, 5}, 15)});
  // A non-contiguous (transposed) input goes through the strided kernels.
  check_grad([](auto& x) { return ops::mul(x[0].transpose(0, 1), x[1]); },
             {rand_req({4, 3}, 16), rand_req({3, 4}, 17)});
}

// ---- reductions --------------------------------------------------------------------------------------

TEST_CASE("sum and mean match torch") {
  const double rtol = 1e-12, atol = 1e-14;
  check_golden(
      "sum_all", {"x"}, [](auto& x) { return ops::sum(x[0]); }, rtol, atol);
  const auto d1 = dims_of(golden("sum_dims")), d2 = dims_of(golden("sum_keepdim")), d3 = dims_of(golden("mean_dims"));
  check_golden(
      "sum_dims", {"x"}, [&](auto& x) { return ops::sum(x[0], d1); }, rtol, atol);
  check_golden(
      "sum_keepdim", {"x"}, [&](auto& x) { return ops::sum(x[0], d2, true); }, rtol, atol);
  check_golden(
      "mean_all", {"x"}, [](auto& x) { return ops::mean(x[0]); }, rtol, atol);
  check_golden(
      "mean_dims", {"x"}, [&](auto& x) { return ops::mean(x[0], d3); }, rtol, atol);
}

TEST_CASE("sum and mean gradients (finite differences)") {
  check_grad([](auto& x) { return ops::sum(x[0]); }, {rand_req({3, 4}, 20)});
  check_grad([](auto& x) { return ops::sum(x[0], {0, 2}); }, {rand_req({2, 3, 4}, 21)});
  check_grad([](auto& x) { return ops::sum(x[0], {1}, true); }, {rand_req({2, 3, 4}, 22)});
  check_grad([](auto& x) { return ops::mean(x[0]); }, {rand_req({3, 4}, 23)});
  check_grad([](auto& x) { return ops::mean(x[0], {-1}); }, {rand_req({2, 3, 4}, 24)});
}

// ---- matmul / linear -------------------------------------------------------------------------------

TEST_CASE("matmul and linear match torch") {
  const double rtol = 1e-12, atol = 1e-13;
  for (const char* name :
       {"matmul", "matmul_ta", "matmul_tb", "matmul_tatb", "matmul_batch_shared", "matmul_batch_bcast"}) {
    const GoldenCase& c = golden(name);
    const bool ta = c.at("trans_a").item() != 0, tb = c.at("trans_b").item() != 0;
    check_golden(
        name, {"a", "b"}, [&](auto& x) { return ops::matmul(x[0], x[1], ta, tb); }, rtol, atol);
  }
  check_golden(
      "linear_bias", {"x", "weight", "bias"}, [](auto& x) { return ops::linear(x[0], x[1], x[2]); }, rtol, atol);
  check_golden(
      "linear_nobias", {"x", "weight"}, [](auto& x) { return ops::linear(x[0], x[1]); }, rtol, atol);
}

TEST_CASE("matmul and linear gradients (finite differences)") {
  check_grad([](auto& x) { return ops::matmul(x[0], x[1]); }, {rand_req({3, 4}, 30), rand_req({4, 5}, 31)});
  check_grad([](auto& x) { return ops::matmul(x[0], x[1], true, false); },
             {rand_req({4, 3}, 32), rand_req({4, 5}, 33)});
  check_grad([](auto& x) { return ops::matmul(x[0], x[1], false, true); },
             {rand_req({3, 4}, 34), rand_req({5, 4}, 35)});
  check_grad([](auto& x) { return ops::matmul(x[0], x[1], true, true); },
             {rand_req({2, 4, 3}, 36), rand_req({2, 5, 4}, 37)});
  check_grad([](auto& x) { return ops::matmul(x[0], x[1]); }, {rand_req({2, 3, 3, 4}, 38), rand_req({4, 2}, 39)});
  check_grad([](auto& x) { return ops::matmul(x[0], x[1], false, true); },
             {rand_req({2, 1, 3, 4}, 40), rand_req({3, 5, 4}, 41)});
  check_grad([](auto& x) { return ops::linear(x[0], x[1], x[2]); },
             {rand_req({2, 3, 4}, 42), rand_req({5, 4}, 43), rand_req({5}, 44)});
}

// ---- activations ---------------------------------------------------------------------------------------

TEST_CASE("silu and swiglu match torch") {
  check_golden(
      "silu", {"x"}, [](auto& x) { return ops::silu(x[0]); }, 1e-12, 1e-14);
  check_golden(
      "swiglu", {"gate", "up"}, [](auto& x) { return ops::swiglu(x[0], x[1]); }, 1e-12, 1e-14);
}

TEST_CASE("silu and swiglu gradients (finite differences)") {
  check_grad([](auto& x) { return ops::silu(x[0]); }, {rand_req({3, 7}, 50, -6.0, 6.0)});
  check_grad([](auto& x) { return ops::swiglu(x[0], x[1]); },
             {rand_req({2, 3, 5}, 51, -6.0, 6.0), rand_req({2, 3, 5}, 52)});
  // Only one side requiring grad.
  check_grad([](auto& x) { return ops::swiglu(x[0], x[1]); }, {rand_req({4, 5}, 53), testing::random_f64({4, 5}, 54)});
}

TEST_CASE("fused swiglu equals silu(gate) * up on a large parallel tensor, forward and backward") {
  const Tensor g0 = testing::random_f64({64, 1100}, 55, -8.0, 8.0), u0 = testing::random_f64({64, 1100}, 56);
  const Tensor w = testing::random_f64({64, 1100}, 57);
  Tensor g1 = g0.clone().requires_grad_(), u1 = u0.clone().requires_grad_();
  Tensor g2 = g0.clone().requires_grad_(), u2 = u0.clone().requires_grad_();
  const Tensor fused = ops::swiglu(g1, u1), composed = ops::mul(ops::silu(g2), u2);
  QTUNE_CHECK_CLOSE(fused, composed, 1e-14, 1e-15);
  ops::sum(ops::mul(fused, w)).backward();
  ops::sum(ops::mul(composed, w)).backward();
  QTUNE_CHECK_CLOSE(g1.grad(), g2.grad(), 1e-13, 1e-15);
  QTUNE_CHECK_CLOSE(u1.grad(), u2.grad(), 1e-13, 1e-15);
  // f32 and bf16 compute in f32 and round once.
  for (DType dt : {DType::f32, DType::bf16}) {
    const Tensor r = ops::swiglu(g0.to(dt), u0.to(dt));
    const Tensor ref = ops::mul(ops::silu(g0.to(dt).to(DType::f64)), u0.to(dt).to(DType::f64));
    QTUNE_CHECK_CLOSE(r.to(DType::f64), ref, dt == DType::f32 ? 1e-6 : 8e-3, 1e-6);
  }
}

// ---- embedding ---------------------------------------------------------------------------------------------

TEST_CASE("embedding matches torch, with i64 and i32 ids") {
  check_golden(
      "embedding", {"weight", "ids"}, [](auto& x) { return ops::embedding(x[0], x[1]); }, 0.0, 1e-300);
  check_golden(
      "embedding", {"weight", "ids"}, [](auto& x) { return ops::embedding(x[0], x[1].to(DType::i32)); }, 0.0, 1e-300);
}

TEST_CASE("embedding gradient (finite differences) and scatter-add with repeated ids") {
  const Tensor ids = Tensor::from_vector<int64_t>({2, 0, 2, 4, 2, 1}, {2, 3});
  check_grad([&](auto& x) { return ops::embedding(x[0], ids); }, {rand_req({5, 3}, 60)});

  // Large enough for the parallel column split; reference: the scatter-add loop written out.
  const int64_t vocab = 60, cols = 700, n = 300;
  std::vector<int64_t> id_values(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) id_values[static_cast<size_t>(i)] = (i * 7) % 13 + (i % 3) * 20;
  const Tensor many = Tensor::from_vector(id_values, {n});
  Tensor weight = testing::random_f64({vocab, cols}, 61).requires_grad_();
  const Tensor g = testing::random_f64({n, cols}, 62);
  ops::sum(ops::mul(ops::embedding(weight, many), g)).backward();
  std::vector<double> expected(static_cast<size_t>(vocab * cols), 0.0);
  const auto gv = g.to_vector<double>();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < cols; ++c)
      expected[static_cast<size_t>(id_values[static_cast<size_t>(i)] * cols + c)] +=
          gv[static_cast<size_t>(i * cols + c)];
  QTUNE_CHECK_CLOSE(weight.grad(), Tensor::from_vector(expected, {vocab, cols}), 1e-13, 1e-14);
}

// ---- rmsnorm ---------------------------------------------------------------------------------------------

TEST_CASE("rmsnorm's weight gradient has the same bits whatever the thread count") {
  // 300 rows: several fixed row chunks and a ragged one. FSDP's single-threaded ranks rely on this.
  const Tensor x = testing::random_f64({300, 64}, 61, -1.0, 1.0).to(DType::f32);
  const auto weight_grad = [&] {
    Tensor w = Tensor::ones({64});
    w.requires_grad_(true);
    ops::sum(ops::rmsnorm(x, w, 1e-5) * x).backward();
    return w.grad().to_vector<float>();
  };
  const std::vector<float> many = weight_grad();
#if defined(_OPENMP)
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const std::vector<float> one = weight_grad();
  omp_set_num_threads(threads);
  CHECK(one == many);
#endif
  CHECK(many.size() == 64);
}

TEST_CASE("rmsnorm matches torch in f64, f32 and bf16") {
  const double eps = golden("rmsnorm").at("eps").item();
  auto fn = [&](auto& x) { return ops::rmsnorm(x[0], x[1], eps); };
  check_golden("rmsnorm", {"x", "weight"}, fn, 1e-12, 1e-14);
  // HF LlamaRMSNorm in f32.
  check_golden("rmsnorm_f32", {"x", "weight"}, fn, 1e-6, 1e-7, DType::f32);
  check_golden("rmsnorm_f32_grad", {"x", "weight"}, fn, 2e-5, 2e-6, DType::f32);
  // Against HF's bf16 module, which rounds x * rstd to bf16 before the weight multiply: within one
  // bf16 ulp (up to 2^-7 relative).
  check_golden("rmsnorm_bf16_hf", {"x", "weight"}, fn, 7.9e-3, 1e-6, DType::bf16);
  // Against the same f32 math rounded once: equal up to a rounding tie flipped by the sum order.
  check_golden("rmsnorm_bf16_fused", {"x", "weight"}, fn, 4e-3, 1e-6, DType::bf16);
  const GoldenCase& c = golden("rmsnorm_bf16_fused");
  const auto ours = ops::rmsnorm(c.at("x").to(DType::bf16), c.at("weight").to(DType::bf16), eps).to_vector<double>();
  const auto ref = c.at("out").to_vector<double>();
  int64_t exact = 0;
  for (size_t i = 0; i < ref.size(); ++i) exact += ours[i] == ref[i];
  CHECK_MESSAGE(exact * 10 >= static_cast<int64_t>(ref.size()) * 9, exact, " of ", ref.size(),
                " bf16 values are bit-identical to torch");
}

TEST_CASE("rmsnorm gradients (finite differences)") {
  check_grad([](auto& x) { return ops::rmsnorm(x[0], x[1], 1e-5); },
             {rand_req({2, 3, 8}, 70, -2.0, 2.0), rand_req({8}, 71, 0.5, 1.5)});
  check_grad([](auto& x) { return ops::rmsnorm(x[0], x[1], 1e-5); },
             {rand_req({4, 6}, 72), testing::random_f64({6}, 73)});
  check_grad([](auto& x) { return ops::rmsnorm(x[0], x[1], 1e-5); },
             {testing::random_f64({4, 6}, 74), rand_req({6}, 75)});
  // A non-contiguous input.
  check_grad([](auto& x) { return ops::rmsnorm(x[0].transpose(0, 1), x[1], 1e-5); },
             {rand_req({6, 4}, 76), rand_req({6}, 77)});
}

TEST_CASE("fused rmsnorm equals the composed formula on a large parallel tensor, forward and backward") {
  const Tensor x0 = testing::random_f64({96, 520}, 80, -3.0, 3.0), w0 = testing::random_f64({520}, 81, 0.5, 1.5);
  const Tensor g = testing::random_f64({96, 520}, 82);
  Tensor x1 = x0.clone().requires_grad_(), w1 = w0.clone().requires_grad_();
  Tensor x2 = x0.clone().requires_grad_(), w2 = w0.clone().requires_grad_();
  const Tensor fused = ops::rmsnorm(x1, w1, 1e-6);
  const Tensor composed =
      ops::mul(ops::mul(x2, ops::rsqrt(ops::add_scalar(ops::mean(ops::square(x2), {-1}, true), 1e-6))), w2);
  QTUNE_CHECK_CLOSE(fused, composed, 1e-13, 1e-14);
  ops::sum(ops::mul(fused, g)).backward();
  ops::sum(ops::mul(composed, g)).backward();
  QTUNE_CHECK_CLOSE(x1.grad(), x2.grad(), 1e-11, 1e-13);
  QTUNE_CHECK_CLOSE(w1.grad(), w2.grad(), 1e-11, 1e-13);
  // The f32 kernel over long rows stays within f32 rounding of the f64 result.
  QTUNE_CHECK_CLOSE(ops::rmsnorm(x0.to(DType::f32), w0.to(DType::f32), 1e-6).to(DType::f64),
                    ops::rmsnorm(x0.to(DType::f32).to(DType::f64), w0.to(DType::f32).to(DType::f64), 1e-6), 2e-6, 1e-7);
  // So does the backward (520 = 32 blocks of 16 and a tail of 8), in f32 and in bf16, against f64 on the same
  // rounded inputs; bf16 rounds its gradients once.
  for (DType dt : {DType::f32, DType::bf16}) {
    CAPTURE(dtype_name(dt));
    Tensor xr = x0.to(dt).requires_grad_(), wr = w0.to(dt).requires_grad_();
    Tensor xe = x0.to(dt).to(DType::f64).requires_grad_(), we = w0.to(dt).to(DType::f64).requires_grad_();
    const Tensor gr = g.to(dt);
    ops::rmsnorm(xr, wr, 1e-6).backward(gr);
    ops::rmsnorm(xe, we, 1e-6).backward(gr.to(DType::f64));
    const double rtol = dt == DType::f32 ? 1e-4 : 8e-3, atol = dt == DType::f32 ? 1e-6 : 1e-4;
    QTUNE_CHECK_CLOSE(xr.grad().to(DType::f64), xe.grad(), rtol, atol);
    QTUNE_CHECK_CLOSE(wr.grad().to(DType::f64), we.grad(), rtol, atol);
  }
}

// ---- rope --------------------------------------------------------------------------------------------------

TEST_CASE("rope matches torch in f64") {
  const GoldenCase& c = golden("rope");
  const double theta = c.at("theta").item();
  const int64_t dim = c.at("x").size(3);
  auto [cos, sin] = ops::rope_tables(c.at("positions"), dim, theta, {}, DType::f64);
  check_golden(
      "rope", {"x"}, [&](auto& x) { return ops::rope(x[0], cos, sin); }, 1e-12, 1e-14);
}

TEST_CASE("rope matches transformers in f32, default and llama3 scaling") {
  for (const char* name : {"rope_f32", "rope_llama3_f32"}) {
    CAPTURE(name);
    const GoldenCase& c = golden(name);
    const double theta = c.at("theta").item();
    const int64_t dim = c.at("x").size(3);
    ops::RopeScaling scaling;
    if (c.at("llama3").item() != 0) {
      scaling.type = ops::RopeScaling::Type::llama3;  // the generator's config: factor 8, 1, 4, 8192
      scaling.factor = 8.0;
      scaling.low_freq_factor = 1.0;
      scaling.high_freq_factor = 4.0;
      scaling.original_max_position_embeddings = 8192;
    }
    QTUNE_CHECK_CLOSE(ops::rope_inv_freq(dim, theta, scaling).to(DType::f64), c.at("inv_freq"), 1.2e-7, 0.0);
    auto [cos, sin] = ops::rope_tables(c.at("positions"), dim, theta, scaling);
    check_golden(
        name, {"x"}, [&](auto& x) { return ops::rope(x[0], cos, sin); }, 1e-6, 2e-6, DType::f32);
  }
  // The llama3 case exercises all three bands: some frequencies kept, some divided by the factor,
  // some interpolated.
  const Tensor plain = ops::rope_inv_freq(16, 10000.0, {}, DType::f64);
  ops::RopeScaling l3;
  l3.type = ops::RopeScaling::Type::llama3;
  const auto a = plain.to_vector<double>(), b = ops::rope_inv_freq(16, 10000.0, l3, DType::f64).to_vector<double>();
  int kept = 0, divided = 0, between = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (b[i] == a[i])
      ++kept;
    else if (std::fabs(b[i] - a[i] / l3.factor) < 1e-15)
      ++divided;
    else if (b[i] < a[i] && b[i] > a[i] / l3.factor)
      ++between;
  }
  CHECK(kept > 0);
  CHECK(divided > 0);
  CHECK(between > 0);
  CHECK(kept + divided + between == static_cast<int>(a.size()));
}

TEST_CASE("rope gradients (finite differences) and the inverse rotation") {
  auto [cos, sin] = ops::rope_tables(3, 4, 8, 10000.0, {}, DType::f64);
  check_grad([&](auto& x) { return ops::rope(x[0], cos, sin); }, {rand_req({2, 4, 3, 8}, 90)});
  ops::RopeScaling l3;
  l3.type = ops::RopeScaling::Type::llama3;
  l3.original_max_position_embeddings = 64;
  auto [c3, s3] = ops::rope_tables(100, 4, 8, 500000.0, l3, DType::f64);
  check_grad([&](auto& x) { return ops::rope(x[0], c3, s3); }, {rand_req({1, 4, 2, 8}, 91)});
  // A rotation preserves each pair's norm.
  const Tensor x = testing::random_f64({2, 4, 3, 8}, 92);
  const Tensor y = ops::rope(x, cos, sin);
  QTUNE_CHECK_CLOSE(ops::sum(ops::square(y), {-1}), ops::sum(ops::square(x), {-1}), 1e-13, 1e-14);
}

TEST_CASE("rope in bf16 follows the f32 path within bf16 rounding") {
  const Tensor x = testing::random_f64({2, 6, 2, 16}, 93).to(DType::bf16);
  auto [cos, sin] = ops::rope_tables(0, 6, 16, 10000.0);
  const Tensor y = ops::rope(x, cos, sin);
  CHECK(y.dtype() == DType::bf16);
  QTUNE_CHECK_CLOSE(y.to(DType::f64), ops::rope(x.to(DType::f32), cos, sin).to(DType::f64), 1e-2, 1e-2);
}

// ---- bad inputs ---------------------------------------------------------------------------------------------

TEST_CASE("bad inputs raise errors naming the shapes") {
  const Tensor a = Tensor::zeros({3, 4}), b = Tensor::zeros({5});
  expect_error([&] { (void)ops::add(a, b); }, {"[3, 4]", "[5]"});
  expect_error([&] { (void)ops::matmul(a, Tensor::zeros({5, 2})); }, {"[3, 4]", "[5, 2]"});
  expect_error([&] { (void)ops::linear(a, Tensor::zeros({2, 5})); }, {"[3, 4]", "[2, 5]"});
  expect_error([&] { (void)ops::rmsnorm(a, b, 1e-6); }, {"[3, 4]", "[5]"});
  expect_error([&] { (void)ops::rmsnorm(a, Tensor::ones({4}, DType::f64), 1e-6); }, {"dtype"});
  expect_error([&] { (void)ops::swiglu(a, Tensor::zeros({4, 3})); }, {"[3, 4]", "[4, 3]"});
  auto [cos, sin] = ops::rope_tables(0, 5, 8, 10000.0);
  expect_error([&] { (void)ops::rope(Tensor::zeros({1, 4, 2, 8}), cos, sin); }, {"[1, 4, 2, 8]", "[5, 4]"});
  expect_error([&] { (void)ops::rope(Tensor::zeros({1, 5, 2, 8}, DType::f64), cos, sin); }, {"f64"});
  expect_error([&] { (void)ops::rope_tables(0, 4, 7, 10000.0); }, {"even"});
  const Tensor table = Tensor::zeros({6, 3});
  expect_error([&] { (void)ops::embedding(table, Tensor::from_vector<int64_t>({1, 6}, {2})); }, {"id 6", "V = 6"});
  expect_error([&] { (void)ops::embedding(table, Tensor::from_vector<int32_t>({-1}, {1})); }, {"id -1", "V = 6"});
  expect_error([&] { (void)ops::embedding(table, Tensor::zeros({2})); }, {"i32 or i64"});
}
