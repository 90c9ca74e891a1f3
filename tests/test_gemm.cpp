// Backend::gemm against a naive f64 reference, through whichever library QTUNE_BLAS selected (the
// library paths and the Eigen fallback for layouts BLAS cannot take are both exercised). bf16/f16 run on both
// of their paths: natively (oneDNN's matmul, where this CPU has the instructions) and widened to f32, which
// QTUNE_GEMM_WIDEN=1 forces.
#include <strings.h>
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>

#include "engine/allocator.h"
#include "engine/backend.h"
#include "tests/testing.h"

using namespace qtune;

namespace {

Backend& cpu() { return backend_for(Device::cpu()); }

// c_out[i] = alpha * op(a[i]) @ op(b[i]) + beta * c_in[i], in f64 from the operands' stored values.
Tensor reference(const Tensor& a, bool ta, const Tensor& b, bool tb, const Tensor& c_in, double alpha, double beta) {
  const int64_t batch = c_in.size(0), m = c_in.size(1), n = c_in.size(2), k = ta ? a.size(1) : a.size(2);
  const auto A = a.to_vector<double>(), B = b.to_vector<double>(), C = c_in.to_vector<double>();
  std::vector<double> out(C.size());
  for (int64_t p = 0; p < batch; ++p)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t l = 0; l < k; ++l) {
          const double av = ta ? A[(p * k + l) * m + i] : A[(p * m + i) * k + l];
          const double bv = tb ? B[(p * n + j) * k + l] : B[(p * k + l) * n + j];
          s += av * bv;
        }
        const size_t o = size_t((p * m + i) * n + j);
        out[o] = alpha * s + (beta == 0.0 ? 0.0 : beta * C[o]);
      }
  return Tensor::from_vector<double>(out, {batch, m, n});
}

// Tolerances per dtype, relative to f64 sums of at most a few hundred products of values in [-1, 1].
// bf16 and f16 outputs are rounded to 8 and 11 significant bits.
void tolerances(DType dt, double& rtol, double& atol) {
  switch (dt) {
    case DType::f64:
      rtol = 1e-12, atol = 1e-12;
      break;
    case DType::f32:
      rtol = 1e-5, atol = 1e-5;
      break;
    case DType::f16:
      rtol = 1e-3, atol = 1e-3;
      break;
    default:
      rtol = 8e-3, atol = 1e-3;
      break;
  }
}

// A dtype and, for bf16/f16, the path its GEMMs take; constructing a Mode's guard sets QTUNE_GEMM_WIDEN.
struct Mode {
  DType dt;
  bool widen = false;
};
struct WidenGuard {
  explicit WidenGuard(const Mode& mode) {
    if (mode.widen)
      ::setenv("QTUNE_GEMM_WIDEN", "1", 1);
    else
      ::unsetenv("QTUNE_GEMM_WIDEN");
  }
  ~WidenGuard() { ::unsetenv("QTUNE_GEMM_WIDEN"); }
};
const std::array<Mode, 6> kModes{
    {{DType::f64}, {DType::f32}, {DType::bf16}, {DType::bf16, true}, {DType::f16}, {DType::f16, true}}};

Tensor random(const Shape& shape, uint64_t seed, DType dt) { return testing::random_f64(shape, seed).to(dt); }

void check_gemm(const Tensor& a, bool ta, const Tensor& b, bool tb, const Tensor& c, double alpha, double beta) {
  const Tensor c_in = c.clone();
  const Tensor expected = reference(a, ta, b, tb, c_in, alpha, beta);
  cpu().gemm(a, ta, b, tb, c, alpha, beta);
  double rtol, atol;
  tolerances(c.dtype(), rtol, atol);
  QTUNE_CHECK_CLOSE(c, expected, rtol, atol);
}

// {1, 37, 19} and {23, 1, 17}: one output row / column, the matrix-vector path.
const std::array<std::array<int64_t, 3>, 6> kShapes{
    {{1, 1, 1}, {7, 13, 5}, {65, 33, 129}, {2, 70, 1}, {1, 37, 19}, {23, 1, 17}}};

}  // namespace

TEST_CASE("gemm matches the f64 reference for every transpose, size and dtype") {
  uint64_t seed = 1;
  for (const Mode& mode : kModes)
    for (auto [m, n, k] : kShapes)
      for (bool ta : {false, true})
        for (bool tb : {false, true}) {
          const DType dt = mode.dt;
          const WidenGuard guard(mode);
          INFO("dtype=", dtype_name(dt), " widen=", mode.widen, " m=", m, " n=", n, " k=", k, " ta=", ta, " tb=", tb);
          const int64_t batch = 2;
          Tensor a = random(ta ? Shape{batch, k, m} : Shape{batch, m, k}, seed++, dt);
          Tensor b = random(tb ? Shape{batch, n, k} : Shape{batch, k, n}, seed++, dt);
          Tensor c = Tensor::empty({batch, m, n}, dt);
          check_gemm(a, ta, b, tb, c, 1.0, 0.0);
        }
}

TEST_CASE("gemm accumulates into C with alpha and beta") {
  uint64_t seed = 100;
  for (const Mode& mode : kModes)
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        const DType dt = mode.dt;
        const WidenGuard guard(mode);
        INFO("dtype=", dtype_name(dt), " widen=", mode.widen, " ta=", ta, " tb=", tb);
        const int64_t m = 9, n = 17, k = 33;
        Tensor a = random(ta ? Shape{3, k, m} : Shape{3, m, k}, seed++, dt);
        Tensor b = random(tb ? Shape{3, n, k} : Shape{3, k, n}, seed++, dt);
        Tensor c = random({3, m, n}, seed++, dt);
        check_gemm(a, ta, b, tb, c, 0.5, -1.5);
        check_gemm(a, ta, b, tb, c, -2.0, 1.0);
      }
}

TEST_CASE("gemm with beta 0 does not read C") {
  for (const Mode& mode : kModes) {
    const DType dt = mode.dt;
    const WidenGuard guard(mode);
    INFO("dtype=", dtype_name(dt), " widen=", mode.widen);
    for (auto [m, n] : {std::pair<int64_t, int64_t>{4, 5}, {1, 5}, {4, 1}}) {
      Tensor a = random({1, m, 6}, 7, dt), b = random({1, 6, n}, 8, dt);
      Tensor c = Tensor::full({1, m, n}, std::numeric_limits<double>::quiet_NaN(), dt);
      cpu().gemm(a, false, b, false, c, 1.0, 0.0);
      for (double v : c.to_vector<double>()) CHECK(std::isfinite(v));
    }
  }
}

TEST_CASE("gemm shares a batch-stride-0 operand across the batch") {
  for (const Mode& mode : kModes)
    for (bool tb : {false, true}) {
      const DType dt = mode.dt;
      const WidenGuard guard(mode);
      INFO("dtype=", dtype_name(dt), " widen=", mode.widen, " tb=", tb);
      const int64_t batch = 4, m = 11, n = 19, k = 23;
      Tensor a = random({batch, m, k}, 11, dt);
      Tensor w =
          random(tb ? Shape{1, n, k} : Shape{1, k, n}, 12, dt).expand(tb ? Shape{batch, n, k} : Shape{batch, k, n});
      REQUIRE(w.stride(0) == 0);
      check_gemm(a, false, w, tb, Tensor::empty({batch, m, n}, dt), 1.0, 0.0);
      // A shared, B per batch entry.
      Tensor a_shared = random({1, m, k}, 14, dt).expand({batch, m, k});
      Tensor b_each = random(tb ? Shape{batch, n, k} : Shape{batch, k, n}, 15, dt);
      check_gemm(a_shared, false, b_each, tb, Tensor::empty({batch, m, n}, dt), 1.0, 0.0);
      // Both inputs shared: every batch entry of C gets the same product.
      Tensor a0 = random({1, m, k}, 13, dt).expand({batch, m, k});
      check_gemm(a0, false, w, tb, Tensor::empty({batch, m, n}, dt), 1.0, 0.0);
    }
}

TEST_CASE("gemm on views of wider matrices (row stride > width) leaves the rest untouched") {
  uint64_t seed = 200;
  for (const Mode& mode : kModes)
    for (auto [m, n] : {std::pair<int64_t, int64_t>{13, 10}, {1, 10}, {13, 1}})
      for (bool ta : {false, true})
        for (bool tb : {false, true}) {
          const DType dt = mode.dt;
          const WidenGuard guard(mode);
          INFO("dtype=", dtype_name(dt), " widen=", mode.widen, " m=", m, " n=", n, " ta=", ta, " tb=", tb);
          const int64_t batch = 2, k = 21;
          Shape as = ta ? Shape{batch, k, m} : Shape{batch, m, k}, bs = tb ? Shape{batch, n, k} : Shape{batch, k, n};
          Tensor a_wide = random({batch, as[1], as[2] + 7}, seed++, dt);
          Tensor b_wide = random({batch, bs[1], bs[2] + 3}, seed++, dt);
          Tensor c_wide = random({batch, m + 2, n + 5}, seed++, dt);
          const Tensor c_before = c_wide.clone();
          Tensor a = a_wide.narrow(2, 4, as[2]), b = b_wide.narrow(2, 1, bs[2]);
          Tensor c = c_wide.narrow(1, 1, m).narrow(2, 3, n);
          REQUIRE(a.stride(1) == as[2] + 7);
          check_gemm(a, ta, b, tb, c, 1.0, 0.25);
          // Outside the C view nothing moved.
          const auto now = c_wide.to_vector<double>(), before = c_before.to_vector<double>();
          for (int64_t p = 0; p < batch; ++p)
            for (int64_t i = 0; i < m + 2; ++i)
              for (int64_t j = 0; j < n + 5; ++j) {
                if (i >= 1 && i < 1 + m && j >= 3 && j < 3 + n) continue;
                const size_t o = size_t((p * (m + 2) + i) * (n + 5) + j);
                REQUIRE(now[o] == before[o]);
              }
        }
}

TEST_CASE("bf16 gemm stages large operands a block at a time on both paths") {
  // Each shape makes an operand far larger than the staging tiles of cpu/cpu_gemm.cpp: op(b) [k, n],
  // then op(a) [m, k], then c [m, n] (with k = 3 the operands are tiny but C is not), then both operands
  // through a long K (a vocabulary-sized reduction, accumulated over K tiles).
  struct Dims {
    int64_t m, n, k;
  };
  uint64_t seed = 400;
  for (bool widen : {false, true})
    for (auto [m, n, k] : {Dims{3, 20000, 520}, Dims{20000, 3, 520}, Dims{3000, 3000, 3}, Dims{40, 30, 60000}})
      for (bool ta : {false, true})
        for (bool tb : {false, true}) {
          const WidenGuard guard(Mode{DType::bf16, widen});
          INFO("widen=", widen, " m=", m, " n=", n, " k=", k, " ta=", ta, " tb=", tb);
          Tensor a = random(ta ? Shape{1, k, m} : Shape{1, m, k}, seed++, DType::bf16);
          Tensor b = random(tb ? Shape{1, n, k} : Shape{1, k, n}, seed++, DType::bf16);
          Tensor c = random({1, m, n}, seed++, DType::bf16);
          const Tensor expected = reference(a, ta, b, tb, c.clone(), 1.0, 0.5);
          const size_t largest_f32_bytes = 4 * size_t(std::max({m * k, k * n, m * n}));
          reset_peak_memory(Device::cpu());
          const size_t before = memory_stats(Device::cpu()).allocated;
          cpu().gemm(a, ta, b, tb, c, 1.0, 0.5);
          const size_t staged = memory_stats(Device::cpu()).peak_allocated - before;
          CHECK(staged < largest_f32_bytes / 2);
          double rtol, atol;
          tolerances(DType::bf16, rtol, atol);
          QTUNE_CHECK_CLOSE(c, expected, rtol, atol);
        }
}

TEST_CASE("bf16 gemm runs natively where the CPU multiplies bf16, widened where it does not or when told to") {
  const std::string path = cpu().gemm_path(DType::bf16);
  MESSAGE("bf16 GEMM path: ", path);
  // DNNL_MAX_CPU_ISA caps the instructions oneDNN may use; the CTests test_gemm_isa_* set it below BF16.
  const char* cap = std::getenv("DNNL_MAX_CPU_ISA");
  bool capped_below_bf16 = false;
  for (const char* isa : {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_VNNI"})
    capped_below_bf16 = capped_below_bf16 || (cap != nullptr && ::strcasecmp(cap, isa) == 0);
  __builtin_cpu_init();
  const bool cpu_has_bf16 = __builtin_cpu_supports("avx512bf16");
  if (cpu().gemm_path(DType::f32) == "oneDNN sgemm" && cpu_has_bf16 && !capped_below_bf16)
    CHECK(path.rfind("oneDNN matmul (brg:", 0) == 0);
  else
    CHECK(path.rfind("widened to f32 (", 0) == 0);
  CHECK(cpu().gemm_native(DType::bf16) == (path.rfind("oneDNN matmul", 0) == 0));
  CHECK(cpu().gemm_native(DType::f32));
  const WidenGuard guard(Mode{DType::bf16, true});
  CHECK(cpu().gemm_path(DType::bf16) == "widened to f32 (QTUNE_GEMM_WIDEN=1)");
  CHECK(!cpu().gemm_native(DType::bf16));
}

TEST_CASE("gemm on interleaved batches (batch stride < row stride), single strided matrices, alpha without beta") {
  uint64_t seed = 500;
  for (const Mode& mode : kModes)
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        const DType dt = mode.dt;
        const WidenGuard guard(mode);
        INFO("dtype=", dtype_name(dt), " widen=", mode.widen, " ta=", ta, " tb=", tb);
        // Heads split out of [T, H, D] activations: head h is rows h*D.. of every token, batch stride D.
        const int64_t t = 19, h = 3, d = 16;
        const Tensor q = random({t, h, d}, seed++, dt).transpose(0, 1);  // [H, T, D], strides {D, H*D, 1}
        const Tensor kk = random({t, h, d}, seed++, dt).transpose(0, 1);
        REQUIRE(q.stride(0) < q.stride(1));
        // Attention's two products on such views: scores = q k^T, then scores @ v.
        const Tensor scores = Tensor::empty({h, t, t}, dt);
        check_gemm(q, false, kk, true, scores, 0.125, 0.0);
        const Tensor v = random({t, h, d}, seed++, dt).transpose(0, 1);
        check_gemm(scores, false, v, false, Tensor::empty({h, t, d}, dt), 1.0, 0.0);
        // One matrix (batch 1) whose rows are wider than it: a column block of a larger one.
        const int64_t m = 12, n = 9, k = 20;
        const Tensor aw = random(ta ? Shape{1, k, m + 6} : Shape{1, m, k + 6}, seed++, dt);
        const Tensor bw = random(tb ? Shape{1, n, k + 4} : Shape{1, k, n + 4}, seed++, dt);
        const Tensor a1 = aw.narrow(2, 2, ta ? m : k), b1 = bw.narrow(2, 1, tb ? k : n);
        const Tensor c_wide = random({1, m, n + 3}, seed++, dt);
        check_gemm(a1, ta, b1, tb, c_wide.narrow(2, 0, n), 2.0, 0.0);
      }
}

TEST_CASE("gemm on a row-broadcast operand (row stride 0) takes the Eigen fallback correctly") {
  for (const Mode& mode : kModes) {
    const DType dt = mode.dt;
    const WidenGuard guard(mode);
    INFO("dtype=", dtype_name(dt), " widen=", mode.widen);
    Tensor a = random({1, 1, 8}, 300, dt).expand({1, 6, 8});
    REQUIRE(a.stride(1) == 0);
    check_gemm(a, false, random({1, 8, 5}, 301, dt), false, Tensor::empty({1, 6, 5}, dt), 1.0, 0.0);
  }
}

TEST_CASE("gemm rejects mismatched shapes and dtypes") {
  Tensor a = Tensor::zeros({1, 2, 3}), b = Tensor::zeros({1, 4, 5}), c = Tensor::zeros({1, 2, 5});
  CHECK_THROWS_WITH_AS(cpu().gemm(a, false, b, false, c, 1.0, 0.0), doctest::Contains("do not agree"), Error);
  CHECK_THROWS_WITH_AS(cpu().gemm(a, false, Tensor::zeros({1, 3, 5}, DType::f64), false, c, 1.0, 0.0),
                       doctest::Contains("dtypes differ"), Error);
}
