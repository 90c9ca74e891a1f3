// Scaled dot-product attention: f64 gradient checks across shapes that exercise GQA, the causal
// offset of a KV cache, non-causal attention and multi-tile sequences; PyTorch goldens in f64 and
// f32; non-contiguous inputs; bad-input errors; and the memory of backward at T = 1024.
#include <malloc.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <new>
#include <string>
#if defined(_OPENMP)
#include <omp.h>
#endif

#include "cpu/bf16_tile_gemm.h"
#include "engine/allocator.h"
#include "engine/autograd.h"
#include "engine/rng.h"
#include "ops/attention.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"
#include "tests/testing.h"

using namespace qtune;

// Every operator new/delete of this test binary is counted, so the backward memory test also sees
// scratch a kernel takes from the C++ heap (not only what goes through qtune's allocator). Kept
// out of line: inlined into std::allocator, GCC misreads malloc/free here as mismatched.
namespace {
std::atomic<size_t> g_heap_now{0}, g_heap_peak{0};
}  // namespace

[[gnu::noinline]] void* operator new(size_t n) {
  void* p = std::malloc(n == 0 ? 1 : n);
  if (p == nullptr) throw std::bad_alloc();
  const size_t size = malloc_usable_size(p);
  const size_t now = g_heap_now.fetch_add(size) + size;
  size_t peak = g_heap_peak.load();
  while (now > peak && !g_heap_peak.compare_exchange_weak(peak, now)) {
  }
  return p;
}
[[gnu::noinline]] void operator delete(void* p) noexcept {
  if (p == nullptr) return;
  g_heap_now.fetch_sub(malloc_usable_size(p));
  std::free(p);
}
[[gnu::noinline]] void operator delete(void* p, size_t) noexcept { operator delete(p); }

namespace {

Tensor attn(const std::vector<Tensor>& x, bool causal) {
  return ops::scaled_dot_product_attention(x[0], x[1], x[2], causal);
}

// B, Tq, Tk, Hq, Hkv, D
void check_gradients(int64_t b, int64_t tq, int64_t tk, int64_t hq, int64_t hkv, int64_t d, bool causal) {
  CAPTURE(tq);
  CAPTURE(tk);
  CAPTURE(causal);
  Tensor q = testing::random_f64({b, tq, hq, d}, 11, -2.0, 2.0).requires_grad_();
  Tensor k = testing::random_f64({b, tk, hkv, d}, 12, -2.0, 2.0).requires_grad_();
  Tensor v = testing::random_f64({b, tk, hkv, d}, 13).requires_grad_();
  CHECK(testing::gradcheck([causal](auto& x) { return attn(x, causal); }, {q, k, v}) <= 1.0);
}

// Runs the golden case in `dtype`; returns {out, grad_q, grad_k, grad_v} as f64.
std::vector<Tensor> run_golden(testing::GoldenCase& c, DType dtype, bool causal) {
  std::vector<Tensor> leaves;
  for (const char* name : {"q", "k", "v"}) leaves.push_back(c[name].detach().to(dtype).requires_grad_());
  Tensor out = attn(leaves, causal);
  ops::sum(ops::mul(out, c["w"].detach().to(dtype))).backward();
  return {out.to(DType::f64), leaves[0].grad().to(DType::f64), leaves[1].grad().to(DType::f64),
          leaves[2].grad().to(DType::f64)};
}

}  // namespace

TEST_CASE("attention gradients (f64 finite differences)") {
  check_gradients(2, 5, 5, 4, 2, 3, true);    // GQA, square causal
  check_gradients(1, 3, 7, 2, 1, 4, true);    // KV cache: causal offset Tk - Tq = 4
  check_gradients(1, 4, 6, 2, 2, 3, false);   // non-causal, Tq != Tk
  check_gradients(1, 5, 3, 2, 1, 2, true);    // Tq > Tk: the first queries see no key at all
  check_gradients(1, 70, 70, 2, 1, 2, true);  // two query and key tiles, T not a multiple of 64
  check_gradients(1, 65, 130, 2, 2, 2, false);
  check_gradients(1, 20, 140, 4, 1, 2, true);  // three key tiles behind a short query block
}

TEST_CASE("attention matches PyTorch (f64 and f32)") {
  auto golden = testing::load_golden("ops_b.json");
  for (const char* name : {"attn_causal_gqa", "attn_kv_cache", "attn_noncausal", "attn_long_causal"}) {
    CAPTURE(std::string(name));
    testing::GoldenCase& c = golden.at(name);
    const bool causal = std::string(name) != "attn_noncausal";
    const char* expected[] = {"out", "grad_q", "grad_k", "grad_v"};
    const std::vector<Tensor> f64 = run_golden(c, DType::f64, causal);
    for (size_t i = 0; i < f64.size(); ++i) QTUNE_CHECK_CLOSE(f64[i], c[expected[i]], 1e-10, 1e-12);
    const std::vector<Tensor> f32 = run_golden(c, DType::f32, causal);
    for (size_t i = 0; i < f32.size(); ++i) QTUNE_CHECK_CLOSE(f32[i], c[expected[i]], 1e-4, 1e-5);
  }
}

TEST_CASE("attention in bf16 and f16 stays close to f32") {
  auto golden = testing::load_golden("ops_b.json");
  testing::GoldenCase& c = golden.at("attn_long_causal");
  const std::vector<Tensor> ref = run_golden(c, DType::f32, true);
  for (DType dt : {DType::bf16, DType::f16}) {
    CAPTURE(dtype_name(dt));
    const std::vector<Tensor> low = run_golden(c, dt, true);
    QTUNE_CHECK_CLOSE(low[0], ref[0], 3e-2, 3e-2);
    QTUNE_CHECK_CLOSE(low[1], ref[1], 5e-2, 5e-2);
  }
}

TEST_CASE(
    "bf16 attention: on the bf16 dot-product instruction and widened, close to f32, the same on any thread count") {
  // QTUNE_GEMM_WIDEN=1 keeps bf16 attention's tiles in f32 (Eigen); unset, a CPU with AVX512-BF16 runs them
  // on vdpbf16ps with P and dS rounded to bf16 (cpu/bf16_tile_gemm.h). The test sets the variable itself and
  // puts back what it found.
  const char* found = std::getenv("QTUNE_GEMM_WIDEN");
  const std::string outer = found != nullptr ? found : "";
  const bool had_outer = found != nullptr;
  ::unsetenv("QTUNE_GEMM_WIDEN");
  struct Case {
    int64_t b, tq, tk, hq, hkv, d;
    bool causal;
  };
  const Case cases[] = {{2, 70, 70, 4, 2, 64, true},  // GQA, past one tile
                        {1, 20, 140, 4, 1, 5, true},  // odd head dim, a KV cache's causal offset
                        {1, 65, 130, 2, 2, 8, false}};
  for (const Case& c : cases) {
    CAPTURE(c.tq);
    CAPTURE(c.d);
    Generator gen(31);
    const Tensor q0 = rand({c.b, c.tq, c.hq, c.d}, DType::f32, Device::cpu(), &gen, -2, 2);
    const Tensor k0 = rand({c.b, c.tk, c.hkv, c.d}, DType::f32, Device::cpu(), &gen, -2, 2);
    const Tensor v0 = rand({c.b, c.tk, c.hkv, c.d}, DType::f32, Device::cpu(), &gen, -1, 1);
    const Tensor g0 = rand({c.b, c.tq, c.hq, c.d}, DType::f32, Device::cpu(), &gen, -1, 1);
    auto run = [&](DType dt) {
      Tensor q = q0.to(dt).requires_grad_(), k = k0.to(dt).requires_grad_(), v = v0.to(dt).requires_grad_();
      Tensor out = ops::scaled_dot_product_attention(q, k, v, c.causal);
      out.backward(g0.to(dt));
      return std::vector<Tensor>{out.to(DType::f32), q.grad().to(DType::f32), k.grad().to(DType::f32),
                                 v.grad().to(DType::f32)};
    };
    // The reference: f32 attention of the same bf16-rounded inputs.
    const Tensor q_r = q0.to(DType::bf16), k_r = k0.to(DType::bf16), v_r = v0.to(DType::bf16);
    Tensor q = q_r.to(DType::f32).requires_grad_(), k = k_r.to(DType::f32).requires_grad_();
    Tensor v = v_r.to(DType::f32).requires_grad_();
    Tensor out = ops::scaled_dot_product_attention(q, k, v, c.causal);
    out.backward(g0.to(DType::bf16).to(DType::f32));
    const std::vector<Tensor> ref = {out, q.grad(), k.grad(), v.grad()};
    std::vector<Tensor> paths[2];
    for (const bool widen : {false, true}) {
      CAPTURE(widen);
      if (widen) ::setenv("QTUNE_GEMM_WIDEN", "1", 1);
      const std::vector<Tensor> low = paths[widen] = run(DType::bf16);
#if defined(_OPENMP)
      const int threads = omp_get_max_threads();
      omp_set_num_threads(1);
      const std::vector<Tensor> serial = run(DType::bf16);
      omp_set_num_threads(threads);
      for (size_t i = 0; i < low.size(); ++i) CHECK(low[i].to_vector<float>() == serial[i].to_vector<float>());
#endif
      ::unsetenv("QTUNE_GEMM_WIDEN");
      // bf16 outputs (8-bit mantissas), and on the native path P and dS in bf16 too.
      QTUNE_CHECK_CLOSE(low[0], ref[0], 2e-2, 2e-2);
      for (size_t i = 1; i < low.size(); ++i) QTUNE_CHECK_CLOSE(low[i], ref[i], 4e-2, 4e-2);
    }
    // Where the instruction exists the two paths round differently (P and dS), so they must differ.
    CHECK((paths[0][1].to_vector<float>() != paths[1][1].to_vector<float>()) == cpu::bf16_tile_gemm_native());
  }
  if (had_outer) ::setenv("QTUNE_GEMM_WIDEN", outer.c_str(), 1);
}

TEST_CASE("attention results do not depend on the thread count") {
  // Large enough that every pass splits its tiles across threads; each task owns its outputs, so
  // one thread and many must agree bit for bit.
  Generator gen(5);
  const Tensor q0 = rand({2, 300, 4, 16}, DType::f32, Device::cpu(), &gen, -2, 2);
  const Tensor k0 = rand({2, 300, 2, 16}, DType::f32, Device::cpu(), &gen, -2, 2);
  const Tensor v0 = rand({2, 300, 2, 16}, DType::f32, Device::cpu(), &gen, -1, 1);
  const Tensor g0 = rand({2, 300, 4, 16}, DType::f32, Device::cpu(), &gen, -1, 1);
  auto run = [&] {
    Tensor q = q0.clone().requires_grad_(), k = k0.clone().requires_grad_(), v = v0.clone().requires_grad_();
    Tensor out = ops::scaled_dot_product_attention(q, k, v);
    out.backward(g0);
    return std::vector<std::vector<float>>{out.to_vector<float>(), q.grad().to_vector<float>(),
                                           k.grad().to_vector<float>(), v.grad().to_vector<float>()};
  };
  const auto threaded = run();
#if defined(_OPENMP)
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const auto serial = run();
  omp_set_num_threads(threads);
  CHECK(threaded == serial);
#endif
  // And the f32 result agrees with the f64 computation of the same inputs.
  Tensor q = q0.to(DType::f64).requires_grad_(), k = k0.to(DType::f64).requires_grad_();
  Tensor v = v0.to(DType::f64).requires_grad_();
  Tensor out = ops::scaled_dot_product_attention(q, k, v);
  out.backward(g0.to(DType::f64));
  QTUNE_CHECK_CLOSE(Tensor::from_vector(threaded[0], out.shape()), out, 1e-4, 1e-5);
  QTUNE_CHECK_CLOSE(Tensor::from_vector(threaded[1], q.shape()), q.grad(), 1e-3, 1e-4);
  QTUNE_CHECK_CLOSE(Tensor::from_vector(threaded[2], k.shape()), k.grad(), 1e-3, 1e-4);
  QTUNE_CHECK_CLOSE(Tensor::from_vector(threaded[3], v.shape()), v.grad(), 1e-3, 1e-4);
}

namespace {

constexpr int64_t kNanTokens = 70;
const Shape kNanShape{1, kNanTokens, 2, 8};  // two heads of 8, one KV head each

std::vector<float> random_values(Generator& gen) {
  return rand(kNanShape, DType::f32, Device::cpu(), &gen, -1, 1).to_vector<float>();
}

// Causal attention of q, k, v (kNanShape, given in f32, run in dt) and its backward from an all-ones output
// gradient: the output and the query gradient, in f32, indexed as [token][head][x].
struct OutAndGradQ {
  std::vector<float> out, grad_q;
};
OutAndGradQ causal_attention(const std::vector<float>& qv, const std::vector<float>& kv, const std::vector<float>& vv,
                             DType dt) {
  Tensor q = Tensor::from_vector(qv, kNanShape).to(dt).requires_grad_();
  Tensor k = Tensor::from_vector(kv, kNanShape).to(dt).requires_grad_();
  Tensor v = Tensor::from_vector(vv, kNanShape).to(dt).requires_grad_();
  Tensor out = ops::scaled_dot_product_attention(q, k, v, true);
  out.backward(Tensor::ones(out.shape(), dt));
  return {out.to(DType::f32).to_vector<float>(), q.grad().to(DType::f32).to_vector<float>()};
}

size_t nan_index(int64_t t, int64_t h, int64_t x) { return size_t((t * kNanShape[2] + h) * kNanShape[3] + x); }

}  // namespace

TEST_CASE("a NaN in a query shows in that query's output and gradients, nowhere else in its head's output") {
  for (DType dt : {DType::f32, DType::bf16}) {
    CAPTURE(dtype_name(dt));
    Generator gen(9);
    std::vector<float> qv = random_values(gen);
    qv[nan_index(5, 1, 3)] = std::numeric_limits<float>::quiet_NaN();
    const std::vector<float> kv = random_values(gen), vv = random_values(gen);
    const OutAndGradQ r = causal_attention(qv, kv, vv, dt);
    for (int64_t t = 0; t < kNanTokens; ++t)
      for (int64_t h = 0; h < 2; ++h) {
        CAPTURE(t);
        CAPTURE(h);
        const bool bad = t == 5 && h == 1;
        for (int64_t x = 0; x < 8; ++x) {
          CHECK(std::isnan(r.out[nan_index(t, h, x)]) == bad);
          if (bad) CHECK(std::isnan(r.grad_q[nan_index(t, h, x)]));
        }
      }
  }
}

TEST_CASE("a NaN in a key or value shows in the outputs of the queries that see it, and not in another head") {
  // Token 20 of KV head 0 holds a NaN; causal queries 20.. of head 0 see it (a row whose scores are partly
  // NaN: the exponentials' sum is NaN). Head 1 reads KV head 1 and stays finite. A NaN key is masked to -inf
  // for queries 0..19, so their outputs stay finite too. A zero probability or score gradient times the NaN
  // can still reach those queries (0 * NaN in P V, or in dS K for their gradients), as in any matmul of the
  // full matrices, so they are not checked there.
  for (DType dt : {DType::f32, DType::bf16})
    for (bool in_value : {false, true}) {
      CAPTURE(dtype_name(dt));
      CAPTURE(in_value);
      Generator gen(12);
      const std::vector<float> qv = random_values(gen), other = random_values(gen);
      std::vector<float> with_nan = random_values(gen);
      with_nan[nan_index(20, 0, 5)] = std::numeric_limits<float>::quiet_NaN();
      const OutAndGradQ r =
          in_value ? causal_attention(qv, other, with_nan, dt) : causal_attention(qv, with_nan, other, dt);
      for (int64_t t = 0; t < kNanTokens; ++t)
        for (int64_t h = 0; h < 2; ++h) {
          CAPTURE(t);
          CAPTURE(h);
          const bool sees = h == 0 && t >= 20;
          for (int64_t x = 0; x < 8; ++x) {
            const size_t i = nan_index(t, h, x);
            if (sees) {
              // A NaN value element reaches only its own column of the output; a NaN key, every score.
              CHECK(std::isnan(r.out[i]) == (!in_value || x == 5));
              CHECK(std::isnan(r.grad_q[i]));
            } else if (h == 1) {
              CHECK(std::isfinite(r.out[i]));
              CHECK(std::isfinite(r.grad_q[i]));
            } else if (!in_value) {
              CHECK(std::isfinite(r.out[i]));
            }
          }
        }
    }
}

TEST_CASE("bf16 attention at head dim 40 with 3 query heads per KV head stays close to f32") {
  // 40 = two 16-element blocks and a tail of D's sums, 20 pairs = one 16-pair block and 4 for the packers;
  // 150 tokens end in a partial tile.
  Generator gen(11);
  const Tensor q0 = rand({2, 150, 6, 40}, DType::f32, Device::cpu(), &gen, -1, 1);
  const Tensor k0 = rand({2, 150, 2, 40}, DType::f32, Device::cpu(), &gen, -1, 1);
  const Tensor v0 = rand({2, 150, 2, 40}, DType::f32, Device::cpu(), &gen, -1, 1);
  const Tensor g0 = rand({2, 150, 6, 40}, DType::f32, Device::cpu(), &gen, -1, 1);
  auto run = [&](DType dt) {
    Tensor q = q0.to(dt).requires_grad_(), k = k0.to(dt).requires_grad_(), v = v0.to(dt).requires_grad_();
    Tensor out = ops::scaled_dot_product_attention(q, k, v, true);
    out.backward(g0.to(dt));
    return std::vector<Tensor>{out.to(DType::f32), q.grad().to(DType::f32), k.grad().to(DType::f32),
                               v.grad().to(DType::f32)};
  };
  // The f32 path on bf16-rounded inputs: what bf16 attention approximates.
  const std::vector<Tensor> low = run(DType::bf16);
  Tensor q = q0.to(DType::bf16).to(DType::f32).requires_grad_(), k = k0.to(DType::bf16).to(DType::f32).requires_grad_();
  Tensor v = v0.to(DType::bf16).to(DType::f32).requires_grad_();
  Tensor out = ops::scaled_dot_product_attention(q, k, v, true);
  out.backward(g0.to(DType::bf16).to(DType::f32));
  QTUNE_CHECK_CLOSE(low[0], out, 2e-2, 2e-2);
  QTUNE_CHECK_CLOSE(low[1], q.grad(), 4e-2, 4e-2);
  QTUNE_CHECK_CLOSE(low[2], k.grad(), 4e-2, 4e-2);
  QTUNE_CHECK_CLOSE(low[3], v.grad(), 4e-2, 4e-2);
}

TEST_CASE("attention accepts non-contiguous q, k, v") {
  // [B, H, T, D] storage viewed as [B, T, H, D], the layout a fused QKV projection produces.
  Tensor q = testing::random_f64({1, 4, 9, 3}, 21).transpose(1, 2);
  Tensor k = testing::random_f64({1, 2, 9, 3}, 22).transpose(1, 2);
  Tensor v = testing::random_f64({1, 2, 9, 3}, 23).transpose(1, 2);
  REQUIRE_FALSE(q.is_contiguous());
  CHECK(attn({q, k, v}, true).to_vector<double>() ==
        attn({q.contiguous(), k.contiguous(), v.contiguous()}, true).to_vector<double>());
  Tensor qs = testing::random_f64({1, 2, 6, 2}, 24).requires_grad_();
  Tensor ks = testing::random_f64({1, 2, 6, 2}, 25).requires_grad_();
  Tensor vs = testing::random_f64({1, 2, 6, 2}, 26).requires_grad_();
  CHECK(testing::gradcheck(
            [](auto& x) {
              return attn({x[0].transpose(1, 2), x[1].transpose(1, 2), x[2].transpose(1, 2)}, true);
            },
            {qs, ks, vs}) <= 1.0);
}

TEST_CASE("attention rejects bad shapes with clear errors") {
  Tensor q = Tensor::zeros({1, 4, 4, 8}), k = Tensor::zeros({1, 4, 2, 8});
  CHECK_THROWS_WITH_AS(ops::scaled_dot_product_attention(q, Tensor::zeros({1, 4, 2, 4}), Tensor::zeros({1, 4, 2, 4})),
                       doctest::Contains("head dims differ"), Error);
  CHECK_THROWS_WITH_AS(ops::scaled_dot_product_attention(q, Tensor::zeros({1, 4, 3, 8}), Tensor::zeros({1, 4, 3, 8})),
                       doctest::Contains("multiple of kv heads"), Error);
  CHECK_THROWS_WITH_AS(ops::scaled_dot_product_attention(q, k, Tensor::zeros({1, 5, 2, 8})),
                       doctest::Contains("same shape"), Error);
  CHECK_THROWS_WITH_AS(ops::scaled_dot_product_attention(q, k, k.to(DType::f64)), doctest::Contains("dtypes differ"),
                       Error);
}

TEST_CASE("attention backward never holds a [T, T] score matrix") {
  constexpr int64_t T = 1024, D = 16;
  const size_t full_scores = static_cast<size_t>(T * T) * sizeof(float);
  Generator gen(7);
  Tensor q = rand({1, T, 1, D}, DType::f32, Device::cpu(), &gen, -1, 1).requires_grad_();
  Tensor k = rand({1, T, 1, D}, DType::f32, Device::cpu(), &gen, -1, 1).requires_grad_();
  Tensor v = rand({1, T, 1, D}, DType::f32, Device::cpu(), &gen, -1, 1).requires_grad_();
  Tensor grad = rand({1, T, 1, D}, DType::f32, Device::cpu(), &gen, -1, 1);
  Tensor out = ops::scaled_dot_product_attention(q, k, v);

  reset_peak_memory(Device::cpu());
  const size_t tracked_before = memory_stats(Device::cpu()).allocated;
  const size_t heap_before = g_heap_now.load();
  g_heap_peak.store(heap_before);
  out.backward(grad);
  const size_t tracked_peak = memory_stats(Device::cpu()).peak_allocated - tracked_before;
  const size_t heap_peak = g_heap_peak.load() - heap_before;
  MESSAGE("backward peak: allocator ", tracked_peak, " B, C++ heap ", heap_peak, " B; a score matrix is ", full_scores,
          " B");
  // The three gradients alone are 3 * T * D * 4 = 192 KiB; a score matrix would be 4 MiB.
  CHECK(tracked_peak > 0);
  CHECK(tracked_peak < full_scores / 8);
  CHECK(heap_peak < full_scores / 8);
  CHECK(q.grad().defined());
}
