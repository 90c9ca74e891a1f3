// Parity of the CUDA backend with the CPU backend. Every case runs the same Backend call on both
// and compares; exact where both sides do the same IEEE operations, within stated tolerances where
// the GPU's math library or GEMM summation order may differ. Without a GPU the executable exits 77,
// which CTest reports as SKIPPED (never a silent pass).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>

#include "engine/backend.h"
#include "engine/numerics/tf32.h"
#include "quant/float8_linear.h"  // Float8
#if defined(QTUNE_CUDA_SIM)
#include "cuda/sim/observe.h"
#endif
#include "tests/gpu_test_main.h"
#include "tests/testing.h"

using namespace qtune;
using qtune::testing::random_f64;

namespace {

const Device kGpu = Device::cuda(0);

Backend& cpu() { return backend_for(Device::cpu()); }
Backend& gpu() { return backend_for(kGpu); }

// Raw bytes of a tensor, copied to the host in a contiguous layout.
std::vector<uint8_t> bytes_of(const Tensor& t) {
  const Tensor host = t.contiguous().to(Device::cpu());
  std::vector<uint8_t> out(host.nbytes());
  if (!out.empty()) std::memcpy(out.data(), host.data_ptr(), out.size());
  return out;
}

#define CHECK_SAME_BYTES(gpu_tensor, cpu_tensor)                                             \
  do {                                                                                       \
    REQUIRE((gpu_tensor).shape() == (cpu_tensor).shape());                                   \
    REQUIRE((gpu_tensor).dtype() == (cpu_tensor).dtype());                                   \
    CHECK_MESSAGE(bytes_of(gpu_tensor) == bytes_of(cpu_tensor), "GPU and CPU bytes differ"); \
  } while (0)

// Equal values, element by element, with any NaN matching any NaN: float <-> double conversions may
// keep or canonicalize a NaN's payload bits depending on the processor, and the payload means nothing.
void check_same_values(const Tensor& gpu_tensor, const Tensor& cpu_tensor) {
  REQUIRE(gpu_tensor.shape() == cpu_tensor.shape());
  REQUIRE(gpu_tensor.dtype() == cpu_tensor.dtype());
  const std::vector<double> g = gpu_tensor.to_vector<double>(), c = cpu_tensor.to_vector<double>();
  size_t mismatches = 0, first = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const bool same =
        (std::isnan(g[i]) && std::isnan(c[i])) || (g[i] == c[i] && std::signbit(g[i]) == std::signbit(c[i]));
    if (!same && mismatches++ == 0) first = i;
  }
  CHECK_MESSAGE(mismatches == 0, mismatches, " elements differ; first at ", first, ": gpu ", g[first], " cpu ",
                c[first]);
}

// Values that exercise rounding: a wide range of magnitudes, subnormals of every format, values past
// the fp8 and f16 maxima, and a NaN.
Tensor tricky_f32(int64_t n, uint64_t seed) {
  std::vector<float> v = random_f64({n}, seed, -4.0, 4.0).to(DType::f32).to_vector<float>();
  const float specials[] = {0.0f,
                            -0.0f,
                            1e-8f,
                            -3e-6f,
                            1e-3f,
                            448.0f,
                            449.0f,
                            -500.0f,
                            57344.0f,
                            60000.0f,
                            65504.0f,
                            70000.0f,
                            1e30f,
                            -1e30f,
                            std::numeric_limits<float>::quiet_NaN(),
                            std::numeric_limits<float>::infinity(),
                            2.0f / 3.0f};
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::ldexp(v[i], static_cast<int>(i % 37) - 20);
  for (size_t i = 0; i < std::size(specials) && i < v.size(); ++i) v[i * 7 % v.size()] = specials[i];
  return Tensor::from_vector(v, {n});
}

}  // namespace

TEST_CASE("host <-> device round trip keeps every byte") {
  for (DType t : {DType::f32, DType::bf16, DType::f16, DType::f8_e4m3, DType::i64, DType::u8, DType::boolean}) {
    CAPTURE(dtype_name(t));
    const Tensor host = random_f64({3, 7, 5}, 1, -3.0, 3.0).to(t);
    const Tensor dev = host.to(kGpu);
    CHECK(dev.device() == kGpu);
    CHECK_SAME_BYTES(dev.to(Device::cpu()), host);
  }
  const Tensor empty = Tensor::empty({0, 4}, DType::f32, kGpu);
  CHECK(empty.to(Device::cpu()).numel() == 0);
  const Tensor v = Tensor::from_vector(std::vector<float>{1.5f, -2.0f, 3.25f}, {3}, kGpu);
  CHECK(v.to_vector<float>() == std::vector<float>{1.5f, -2.0f, 3.25f});
}

TEST_CASE("strided copies match the CPU exactly") {
  const Tensor host = random_f64({4, 5, 6}, 2).to(DType::f32);
  const Tensor dev = host.to(kGpu);
  // Permuted, narrowed and broadcast sources into contiguous destinations.
  CHECK_SAME_BYTES(dev.permute({2, 0, 1}).contiguous(), host.permute({2, 0, 1}).contiguous());
  CHECK_SAME_BYTES(dev.narrow(2, 1, 3).contiguous(), host.narrow(2, 1, 3).contiguous());
  CHECK_SAME_BYTES(dev.narrow(1, 2, 1).expand({4, 3, 6}).contiguous(),
                   host.narrow(1, 2, 1).expand({4, 3, 6}).contiguous());
  // A strided destination.
  const Tensor dst_gpu = Tensor::zeros({6, 5, 4}, DType::f32, kGpu);
  const Tensor dst_cpu = Tensor::zeros({6, 5, 4}, DType::f32);
  dst_gpu.permute({2, 1, 0}).copy_(dev);
  dst_cpu.permute({2, 1, 0}).copy_(host);
  CHECK_SAME_BYTES(dst_gpu, dst_cpu);
  // A rank-9 view that cannot be merged below 8 dims is refused with a clear error, never miscomputed.
  const Tensor deep = Tensor::zeros({2, 2, 2, 2, 2, 2, 2, 2, 2}, DType::f32, kGpu);
  CHECK_THROWS_WITH_AS(deep.permute({8, 7, 6, 5, 4, 3, 2, 1, 0}).contiguous(), doctest::Contains("dims"), Error);
}

TEST_CASE("casting copies round as the CPU does (bf16, f16, fp8, integers)") {
  const Tensor f32 = tricky_f32(1000, 3).reshape({20, 50});
  const DType floats[] = {DType::f32, DType::bf16, DType::f16, DType::f8_e4m3, DType::f8_e5m2, DType::f64};
  for (DType from : floats) {
    const Tensor src_cpu = f32.to(from);
    const Tensor src_gpu = src_cpu.to(kGpu);
    for (DType to : {DType::f32, DType::bf16, DType::f16, DType::f8_e4m3, DType::f8_e5m2, DType::f64, DType::i32,
                     DType::boolean}) {
      if (from == to) continue;
      if (to == DType::i32) continue;  // float -> int of NaN/inf/1e30 is undefined in C++; checked below
      CAPTURE(dtype_name(from));
      CAPTURE(dtype_name(to));
      check_same_values(src_gpu.to(to), src_cpu.to(to));
      // Through a transposed source: the strided kernel path.
      check_same_values(src_gpu.transpose(0, 1).to(to), src_cpu.transpose(0, 1).to(to));
    }
  }
  const Tensor finite = random_f64({33, 3}, 4, -300.0, 300.0).to(DType::f32);
  CHECK_SAME_BYTES(finite.to(kGpu).to(DType::i32), finite.to(DType::i32));
  const Tensor small = random_f64({33, 3}, 5, -120.0, 120.0).to(DType::f32);
  CHECK_SAME_BYTES(small.to(kGpu).transpose(0, 1).to(DType::i8).to(DType::u8),
                   small.transpose(0, 1).to(DType::i8).to(DType::u8));
  const Tensor ints = Tensor::arange(101).reshape({1, 101});
  for (DType to : {DType::f32, DType::bf16, DType::f8_e4m3, DType::boolean, DType::i32})
    CHECK_SAME_BYTES(ints.to(kGpu).to(to), ints.to(to));
}

TEST_CASE("fill writes the CPU's bits, strided") {
  for (DType t : {DType::f32, DType::bf16, DType::f16, DType::f8_e4m3, DType::f8_e5m2, DType::f64, DType::i32,
                  DType::i64, DType::u8, DType::boolean}) {
    for (double value : {0.0, 1.0 / 3.0, -7.75, 500.0}) {
      CAPTURE(dtype_name(t));
      CAPTURE(value);
      const Tensor g = Tensor::full({5, 9}, 2.0, t, kGpu);
      const Tensor c = Tensor::full({5, 9}, 2.0, t);
      g.narrow(1, 2, 5).transpose(0, 1).fill_(value);
      c.narrow(1, 2, 5).transpose(0, 1).fill_(value);
      CHECK_SAME_BYTES(g, c);
    }
  }
}

TEST_CASE("binary kernel matches the CPU: contiguous, unaligned and broadcast") {
  const BinaryOp exact_ops[] = {BinaryOp::add, BinaryOp::sub,     BinaryOp::mul,
                                BinaryOp::div, BinaryOp::maximum, BinaryOp::minimum};
  for (DType t : {DType::f32, DType::bf16, DType::f16, DType::f64}) {
    CAPTURE(dtype_name(t));
    // 1027 elements: vector packs plus a scalar tail. Offsetting by one element breaks 16-byte
    // alignment and exercises the scalar contiguous path.
    const Tensor a_cpu = random_f64({1028}, 5, -3.0, 3.0).to(t), b_cpu = random_f64({1028}, 6, 0.5, 2.0).to(t);
    const Tensor a_gpu = a_cpu.to(kGpu), b_gpu = b_cpu.to(kGpu);
    for (int64_t start : {0, 1}) {
      const Tensor ac = a_cpu.narrow(0, start, 1027), bc = b_cpu.narrow(0, start, 1027);
      const Tensor ag = a_gpu.narrow(0, start, 1027), bg = b_gpu.narrow(0, start, 1027);
      for (BinaryOp op : exact_ops) {
        CAPTURE(static_cast<int>(op));
        const Tensor oc = Tensor::empty({1027}, t), og = Tensor::empty({1027}, t, kGpu);
        cpu().binary(op, ac, bc, oc);
        gpu().binary(op, ag, bg, og);
        CHECK_SAME_BYTES(og, oc);
      }
      const Tensor oc = Tensor::empty({1027}, t), og = Tensor::empty({1027}, t, kGpu);
      cpu().binary(BinaryOp::silu_grad, ac, bc, oc);
      gpu().binary(BinaryOp::silu_grad, ag, bg, og);
      // The GPU's expf may differ from glibc's by an ulp or two before rounding to t.
      QTUNE_CHECK_CLOSE(og, oc, t == DType::f32 || t == DType::f64 ? 1e-5 : 1e-2, 1e-6);
    }
    // Broadcast through stride-0 views, into a transposed output.
    const Tensor x_cpu = random_f64({3, 1, 5}, 7).to(t), y_cpu = random_f64({4, 5}, 8, 0.5, 2.0).to(t);
    const Tensor xc = x_cpu.expand({3, 4, 5}), yc = y_cpu.unsqueeze(0).expand({3, 4, 5});
    const Tensor xg = x_cpu.to(kGpu).expand({3, 4, 5}), yg = y_cpu.to(kGpu).unsqueeze(0).expand({3, 4, 5});
    for (BinaryOp op : exact_ops) {
      CAPTURE(static_cast<int>(op));
      const Tensor oc = Tensor::zeros({5, 4, 3}, t).permute({2, 1, 0});
      const Tensor og = Tensor::zeros({5, 4, 3}, t, kGpu).permute({2, 1, 0});
      cpu().binary(op, xc, yc, oc);
      gpu().binary(op, xg, yg, og);
      CHECK_SAME_BYTES(og, oc);
    }
  }
  const Tensor i = Tensor::zeros({4}, DType::i32, kGpu);
  CHECK_THROWS_WITH_AS(gpu().binary(BinaryOp::add, i, i, i), doctest::Contains("not supported"), Error);
}

TEST_CASE("unary, affine and pow kernels match the CPU") {
  struct Case {
    UnaryOp op;
    double low, high;
    bool exact;
  };
  const Case cases[] = {
      {UnaryOp::neg, -3, 3, true},   {UnaryOp::abs, -3, 3, true},         {UnaryOp::square, -3, 3, true},
      {UnaryOp::sqrt, 0.1, 9, true}, {UnaryOp::reciprocal, 0.5, 4, true}, {UnaryOp::exp, -5, 5, false},
      {UnaryOp::log, 0.1, 9, false}, {UnaryOp::rsqrt, 0.1, 9, false},     {UnaryOp::sigmoid, -6, 6, false},
      {UnaryOp::silu, -6, 6, false}, {UnaryOp::tanh, -3, 3, false}};
  for (DType t : {DType::f32, DType::bf16, DType::f16}) {
    for (const Case& c : cases) {
      CAPTURE(dtype_name(t));
      CAPTURE(static_cast<int>(c.op));
      const Tensor x = random_f64({37, 29}, 9, c.low, c.high).to(t);
      const Tensor oc = Tensor::empty({29, 37}, t), og = Tensor::empty({29, 37}, t, kGpu);
      cpu().unary(c.op, x.transpose(0, 1), oc);
      gpu().unary(c.op, x.to(kGpu).transpose(0, 1), og);
      if (c.exact)
        CHECK_SAME_BYTES(og, oc);
      else
        QTUNE_CHECK_CLOSE(og, oc, t == DType::f32 ? 1e-6 : 1e-2, 1e-7);
    }
    const Tensor x = random_f64({1000}, 10, 0.1, 3.0).to(t);
    const Tensor oc = Tensor::empty({1000}, t), og = Tensor::empty({1000}, t, kGpu);
    // The CPU compiler may fuse alpha * x + beta into one FMA; the GPU kernels never fuse.
    cpu().affine(x, 1.7, -0.3, oc);
    gpu().affine(x.to(kGpu), 1.7, -0.3, og);
    QTUNE_CHECK_CLOSE(og, oc, t == DType::f32 ? 1e-6 : 1e-2, 1e-7);
    cpu().pow_scalar(x, 1.5, oc);
    gpu().pow_scalar(x.to(kGpu), 1.5, og);
    QTUNE_CHECK_CLOSE(og, oc, t == DType::f32 ? 2e-6 : 1e-2, 1e-7);
  }
}

TEST_CASE("Philox fills and dropout reproduce the CPU streams") {
  const uint64_t seed = 0x1234abcd5678ull, offset = 77;
  for (DType t : {DType::f32, DType::bf16, DType::f16, DType::f64}) {
    CAPTURE(dtype_name(t));
    for (int64_t n : {1, 6, 1003}) {
      CAPTURE(n);
      const Tensor c = Tensor::empty({n}, t), g = Tensor::empty({n}, t, kGpu);
      // On [0, 1) the value is the uniform itself: no arithmetic that a compiler could fuse.
      cpu().fill_uniform(c, seed, offset, 0.0, 1.0);
      gpu().fill_uniform(g, seed, offset, 0.0, 1.0);
      CHECK_SAME_BYTES(g, c);
      cpu().fill_uniform(c, seed, offset, -2.0, 3.0);
      gpu().fill_uniform(g, seed, offset, -2.0, 3.0);
      QTUNE_CHECK_CLOSE(g, c, t == DType::bf16 || t == DType::f16 ? 1e-2 : 1e-6, 1e-6);
      // Box-Muller goes through logf/cosf, whose GPU versions may differ from glibc by an ulp.
      cpu().fill_normal(c, seed, offset, 0.5, 2.0);
      gpu().fill_normal(g, seed, offset, 0.5, 2.0);
      QTUNE_CHECK_CLOSE(g, c, t == DType::bf16 || t == DType::f16 ? 1e-2 : 1e-5, 1e-5);

      const Tensor x = random_f64({n}, 11, -2.0, 2.0).to(t);
      const Tensor yc = Tensor::empty({n}, t), yg = Tensor::empty({n}, t, kGpu);
      cpu().dropout(x, 0.3, seed, offset, yc);
      gpu().dropout(x.to(kGpu), 0.3, seed, offset, yg);
      CHECK_SAME_BYTES(yg, yc);
    }
  }
  // The stream really is random: about 30% dropped.
  const Tensor y = Tensor::empty({10000}, DType::f32, kGpu);
  gpu().dropout(Tensor::ones({10000}, DType::f32, kGpu), 0.3, 5, 0, y);
  int64_t zeros = 0;
  for (float v : y.to_vector<float>()) zeros += v == 0.0f;
  CHECK(zeros > 2700);
  CHECK(zeros < 3300);
}

TEST_CASE("caching allocator: allocated vs reserved, peak, reuse, empty_cache") {
  Allocator& alloc = allocator_for(kGpu);
  gpu().synchronize();
  alloc.empty_cache();
  const MemoryStats base = alloc.stats();
  CHECK(base.reserved >= base.allocated);
  void* first = nullptr;
  {
    const Tensor t = Tensor::empty({1000}, DType::f32, kGpu);  // 4000 bytes, a 4096-byte block
    first = t.data_ptr();
    const MemoryStats s = alloc.stats();
    CHECK(s.allocated == base.allocated + 4000);
    CHECK(s.reserved == base.reserved + 4096);
    CHECK(s.num_allocations == base.num_allocations + 1);
    CHECK(s.peak_allocated >= s.allocated);
  }
  MemoryStats s = alloc.stats();
  CHECK(s.allocated == base.allocated);
  CHECK(s.reserved == base.reserved + 4096);  // kept for reuse
  {
    const Tensor t = Tensor::empty({1020}, DType::f32, kGpu);  // 4080 bytes: the same size class
    CHECK(t.data_ptr() == first);
    CHECK(alloc.stats().reserved == base.reserved + 4096);
  }
  alloc.reset_peak();
  {
    const Tensor a = Tensor::empty({3 << 20}, DType::u8, kGpu);  // 3 MiB rounds to 4 MiB
    const Tensor b = Tensor::empty({1 << 20}, DType::u8, kGpu);  // 1 MiB: the largest small block
    s = alloc.stats();
    CHECK(s.allocated == base.allocated + (4u << 20));
    CHECK(s.reserved == base.reserved + 4096 + (4u << 20) + (1u << 20));
    CHECK(s.peak_allocated == s.allocated);
  }
  s = alloc.stats();
  CHECK(s.allocated == base.allocated);
  CHECK(s.peak_allocated == base.allocated + (4u << 20));
  CHECK(s.peak_reserved == base.reserved + 4096 + (5u << 20));
  alloc.empty_cache();
  CHECK(alloc.stats().reserved == base.reserved);
  CHECK(alloc.stats().allocated == base.allocated);
}

namespace {

// Runs one gemm on both backends from the same (already rounded) inputs; returns {gpu, cpu} results.
// `shared_b` gives b batch stride 0; `padded` gives every operand a row stride 8 wider than its width.
std::pair<Tensor, Tensor> run_gemm(DType t, int64_t batch, int64_t m, int64_t n, int64_t k, bool ta, bool tb,
                                   bool shared_b, bool padded, double alpha, double beta, uint64_t seed) {
  // The CPU operand and a device copy with the same layout.
  auto make = [&](int64_t rows, int64_t cols, bool shared, uint64_t s) -> std::pair<Tensor, Tensor> {
    const int64_t pad = padded ? 8 : 0;
    const Tensor base = random_f64({shared ? 1 : batch, rows, cols + pad}, s).to(t);
    Tensor c = base.narrow(2, 0, cols), g = base.to(kGpu).narrow(2, 0, cols);
    if (shared) {
      c = c.expand({batch, rows, cols});
      g = g.expand({batch, rows, cols});
    }
    return {c, g};
  };
  const auto [a_cpu, a_gpu] = make(ta ? k : m, ta ? m : k, false, seed);
  const auto [b_cpu, b_gpu] = make(tb ? n : k, tb ? k : n, shared_b, seed + 1);
  const auto [c_cpu, c_gpu] = make(m, n, false, seed + 2);
  if (padded && k > 0) CHECK(a_gpu.stride(1) == a_gpu.size(2) + 8);
  if (shared_b) CHECK(b_gpu.stride(0) == 0);
  cpu().gemm(a_cpu, ta, b_cpu, tb, c_cpu, alpha, beta);
  gpu().gemm(a_gpu, ta, b_gpu, tb, c_gpu, alpha, beta);
  return {c_gpu, c_cpu};
}

}  // namespace

TEST_CASE("cuBLASLt GEMM matches the CPU: dtypes, transposes, broadcast batch, row strides") {
  for (DType t : {DType::f32, DType::bf16, DType::f16, DType::f64}) {
    // bf16/f16 outputs round the f32 sum; a different summation order can flip that rounding by one
    // ulp (2^-8 relative for bf16). f32 differs only in summation order over k = 47 terms, far below
    // what TF32 inputs (2^-11 relative per product) would cost.
    const double rtol = t == DType::bf16 ? 1e-2 : t == DType::f16 ? 2e-3 : t == DType::f32 ? 5e-5 : 1e-12;
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) {
        for (bool shared_b : {false, true}) {
          for (bool padded : {false, true}) {
            CAPTURE(dtype_name(t));
            CAPTURE(ta);
            CAPTURE(tb);
            CAPTURE(shared_b);
            CAPTURE(padded);
            const auto [g, c] = run_gemm(t, 3, 33, 20, 47, ta, tb, shared_b, padded, 0.5, 0.25, 100);
            QTUNE_CHECK_CLOSE(g, c, rtol, rtol);
          }
        }
      }
    }
  }
  // A large bf16 GEMM: accumulation must be f32 (a bf16 accumulator would be off by far more).
  const auto [g, c] = run_gemm(DType::bf16, 1, 128, 256, 4096, false, true, false, false, 1.0, 0.0, 200);
  QTUNE_CHECK_CLOSE(g, c, 1e-2, 2e-2);
  // Empty reduction: only beta * c remains.
  const auto [g0, c0] = run_gemm(DType::f32, 2, 4, 5, 0, false, false, false, false, 1.0, 0.5, 300);
  CHECK_SAME_BYTES(g0, c0);
  // A broadcast output would be written by every batch at once.
  const Tensor a = Tensor::zeros({2, 3, 4}, DType::f32, kGpu), b = Tensor::zeros({2, 4, 5}, DType::f32, kGpu);
  const Tensor shared_c = Tensor::zeros({1, 3, 5}, DType::f32, kGpu).expand({2, 3, 5});
  CHECK_THROWS_WITH_AS(gpu().gemm(a, false, b, false, shared_c, 1.0, 0.0), doctest::Contains("batch stride 0"), Error);
}

TEST_CASE("optimizer updates match the CPU to the bit") {
  // Both sides run engine/numerics/adamw.h: fused multiply-adds written as fmaf, correctly rounded sqrtf and
  // division, no contraction (-fmad=false), the per-step scalars from the same host function.
  for (DType t : {DType::f32, DType::bf16, DType::f16}) {
    CAPTURE(dtype_name(t));
    const int64_t n = 1027;
    const Tensor p = random_f64({n}, 70).to(t), g = random_f64({n}, 71, -0.1, 0.1).to(t), gg = g.to(kGpu);
    const Tensor m = random_f64({n}, 72, -0.01, 0.01).to(DType::f32), v = random_f64({n}, 73, 0.0, 1e-4).to(DType::f32);
    const Tensor pc = p.clone(), mc = m.clone(), vc = v.clone(), pg = p.to(kGpu), mg = m.to(kGpu), vg = v.to(kGpu);
    for (int64_t step : {1, 7}) {
      cpu().adamw_step(pc, g, mc, vc, 1e-3, 0.9, 0.999, 1e-8, 0.1, step);
      gpu().adamw_step(pg, gg, mg, vg, 1e-3, 0.9, 0.999, 1e-8, 0.1, step);
    }
    CHECK_SAME_BYTES(pg, pc);
    CHECK_SAME_BYTES(mg, mc);
    CHECK_SAME_BYTES(vg, vc);
    if (t != DType::f32) {  // mixed precision's one pass, from an f32 master
      const Tensor wc = random_f64({n}, 74).to(DType::f32), wg = wc.to(kGpu);
      for (int64_t step : {1, 7}) {
        cpu().adamw_step_master(pc, wc, g, mc, vc, 1e-3, 0.9, 0.999, 1e-8, 0.1, step);
        gpu().adamw_step_master(pg, wg, gg, mg, vg, 1e-3, 0.9, 0.999, 1e-8, 0.1, step);
      }
      CHECK_SAME_BYTES(wg, wc);
      CHECK_SAME_BYTES(pg, pc);
      CHECK_SAME_BYTES(mg, mc);
      CHECK_SAME_BYTES(vg, vc);
    }
    const Tensor bc = Tensor::empty({n}), bg = Tensor::empty({n}, DType::f32, kGpu);
    for (bool first : {true, false}) {
      cpu().sgd_step(pc, g, bc, 0.05, 0.9, 0.0, true, 0.01, first);
      gpu().sgd_step(pg, gg, bg, 0.05, 0.9, 0.0, true, 0.01, first);
    }
    CHECK_SAME_BYTES(pg, pc);
    CHECK_SAME_BYTES(bg, bc);
    cpu().sgd_step(pc, g, Tensor(), 0.05, 0.0, 0.0, false, 0.0, false);
    gpu().sgd_step(pg, gg, Tensor(), 0.05, 0.0, 0.0, false, 0.0, false);
    CHECK_SAME_BYTES(pg, pc);
  }
  const Tensor p = Tensor::zeros({4}, DType::f32, kGpu), m = Tensor::zeros({4}, DType::f32, kGpu);
  CHECK_THROWS_WITH_AS(gpu().adamw_step(p, Tensor::zeros({4}), m, m, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1),
                       doctest::Contains("gradient is on cpu, expected cuda:0"), Error);
}

TEST_CASE("squared_norm matches the CPU and is deterministic") {
  for (DType t : {DType::f32, DType::bf16, DType::f64}) {
    for (int64_t n : {0, 1, 1000, 70001}) {
      CAPTURE(dtype_name(t));
      CAPTURE(n);
      const Tensor x = random_f64({n}, 74, -2.0, 2.0).to(t), xg = x.to(kGpu);
      const Tensor oc = Tensor::empty({1}, DType::f64), og = Tensor::empty({1}, DType::f64, kGpu);
      const Tensor og2 = Tensor::empty({1}, DType::f64, kGpu);
      cpu().squared_norm(x, oc);
      gpu().squared_norm(xg, og);
      gpu().squared_norm(xg, og2);
      // Another f32 summation order inside each 16384-element chunk than the CPU's 16 lanes: each side
      // adds ~1024 positive terms in a row, so each may be off by up to ~1024 * 2^-24 = 6e-5 relative
      // (random rounding makes ~2e-6 typical; 3e-6 was seen for bf16 at n = 70001).
      QTUNE_CHECK_CLOSE(og, oc, t == DType::f64 ? 1e-12 : 3e-5, 0.0);
      CHECK_SAME_BYTES(og2, og);
    }
  }
}

// Float8
TEST_CASE("clip_by_norm clips on the device as the CPU does, bit for bit, and leaves finite-less norms alone") {
  for (DType t : {DType::f32, DType::bf16, DType::f64}) {
    for (double max_norm : {0.5, 1e6, 0.0}) {
      CAPTURE(dtype_name(t));
      CAPTURE(max_norm);
      const Tensor g = random_f64({1000}, 141, -1.0, 1.0).to(t);
      const Tensor squares = Tensor::from_vector(std::vector<double>{3.0, 0.25, 7.5}, {3});
      const Tensor gc = g.clone(), gg = g.to(kGpu);
      cpu().clip_by_norm(squares, max_norm, gc);
      gpu().clip_by_norm(squares.to(kGpu), max_norm, gg);
      CHECK_SAME_BYTES(gg, gc);
      CHECK((bytes_of(gc) == bytes_of(g)) == (max_norm != 0.5));  // clipped only below the norm
    }
  }
  const Tensor g = Tensor::ones({8}, DType::f32, kGpu);
  gpu().clip_by_norm(Tensor::from_vector(std::vector<double>{1.0, INFINITY}, {2}, kGpu), 0.5, g);
  CHECK(g.to_vector<float>() == std::vector<float>(8, 1.0f));
}

TEST_CASE("fp8_scale and fp8_quantize match the CPU to the bit: every group, format, dtype and pow2") {
  // With the specials (a NaN or infinity makes its group's scale NaN or 0 on both sides) and without.
  std::vector<float> finite_values = tricky_f32(37 * 300, 81).to_vector<float>();
  for (float& v : finite_values) v = std::isfinite(v) ? v : 3.0f;
  for (const Tensor& x32 : {tricky_f32(37 * 300, 81), Tensor::from_vector(finite_values, {37 * 300})}) {
    for (DType t : {DType::f32, DType::bf16, DType::f64}) {
      const Tensor x = x32.view({37, 300}).to(t);
      for (const Shape& group : {Shape{1, 1}, Shape{37, 1}, Shape{1, 300}}) {
        for (bool pow2 : {false, true}) {
          for (DType fp8 : {DType::f8_e4m3, DType::f8_e5m2}) {
            CAPTURE(dtype_name(t));
            CAPTURE(shape_str(group));
            CAPTURE(pow2);
            CAPTURE(dtype_name(fp8));
            const double max = fp8 == DType::f8_e4m3 ? 448.0 : 57344.0;
            const Tensor sc = Tensor::empty(group, DType::f32), sg = Tensor::empty(group, DType::f32, kGpu);
            cpu().fp8_scale(x, max, pow2, sc);
            gpu().fp8_scale(x.to(kGpu), max, pow2, sg);
            check_same_values(sg, sc);
            // Quantize with the CPU's scales on both sides, so a scale mismatch cannot hide in the codes.
            const Tensor cc = Tensor::empty(x.shape(), fp8), cg = Tensor::empty(x.shape(), fp8, kGpu);
            cpu().fp8_quantize(x, sc, cc);
            gpu().fp8_quantize(x.to(kGpu), sc.to(kGpu), cg);
            CHECK_SAME_BYTES(cg, cc);
          }
        }
      }
    }
  }
}

TEST_CASE("set_tf32: f32 GEMMs on cuda read TF32 inputs while it is on; the CPU refuses it") {
  const Tensor a = random_f64({2, 24, 40}, 150, -1.0, 1.0).to(DType::f32);
  const Tensor b = random_f64({2, 40, 32}, 151, -1.0, 1.0).to(DType::f32);
  auto rounded = [](const Tensor& t) {
    const Tensor r = t.contiguous().clone();
    float* p = static_cast<float*>(r.data_ptr());
    for (int64_t i = 0; i < r.numel(); ++i) p[i] = numerics::round_to_tf32(p[i]);
    return r;
  };
  const Tensor exact = Tensor::empty({2, 24, 32}, DType::f32), from_tf32 = Tensor::empty({2, 24, 32}, DType::f32);
  cpu().gemm(a, false, b, false, exact, 1.0, 0.0);
  cpu().gemm(rounded(a), false, rounded(b), false, from_tf32, 1.0, 0.0);
  auto on_gpu = [&](bool tf32) {
    const Tensor c = Tensor::empty({2, 24, 32}, DType::f32, kGpu);
    gpu().set_tf32(tf32);
    gpu().gemm(a.to(kGpu), false, b.to(kGpu), false, c, 1.0, 0.0);
    gpu().set_tf32(false);
    return c.to(Device::cpu());
  };
  const Tensor with_tf32 = on_gpu(true);
  // The simulator rounds as docs/numerics.md §6 states; a GPU's conversion may differ in the last TF32 bit.
#if defined(QTUNE_CUDA_SIM)
  const double tol = 1e-5;
#else
  const double tol = 2e-3;
#endif
  QTUNE_CHECK_CLOSE(with_tf32, from_tf32, tol, tol);
  double largest = 0;
  for (int64_t i = 0; i < exact.numel(); ++i)
    largest = std::max<double>(largest, std::fabs(static_cast<const float*>(with_tf32.data_ptr())[i] -
                                                  static_cast<const float*>(exact.data_ptr())[i]));
  CHECK(largest > 1e-4);  // 10-bit inputs: far from the exact f32 product
  QTUNE_CHECK_CLOSE(on_gpu(false), exact, 1e-5, 1e-5);
  CHECK_FALSE(gpu().tf32());
  CHECK_THROWS_WITH_AS(cpu().set_tf32(true), doctest::Contains("TF32 GEMMs are not available on cpu"), Error);
}

// Hopper's fp8 tensor cores accumulate in fewer bits than f32: on an H200, products of 32-96 fp8 pairs came
// out up to 1.5e-3 (relative) from the f32 sums the CPU's emulation takes. The simulator sums in f32.
#if defined(QTUNE_CUDA_SIM)
constexpr double kFp8SumTol = 1e-5;
#else
constexpr double kFp8SumTol = 5e-3;
#endif

TEST_CASE("fp8_gemm matches the CPU's emulation: cuBLASLt for tensorwise scales, per-row scales, odd shapes") {
  struct Case {
    int64_t m, n, k;
    DType fa, fb;
    bool rows;
  };
  const Case cases[] = {{20, 48, 64, DType::f8_e4m3, DType::f8_e4m3, false},
                        {20, 48, 64, DType::f8_e5m2, DType::f8_e4m3, false},
                        {33, 32, 96, DType::f8_e4m3, DType::f8_e4m3, true},
                        {7, 5, 40, DType::f8_e4m3, DType::f8_e5m2, false}};  // K, N: no cuBLASLt fp8 kernel
  for (const Case& c : cases) {
    for (DType out_dtype : {DType::f32, DType::bf16}) {
      CAPTURE(c.m);
      CAPTURE(c.k);
      CAPTURE(c.rows);
      CAPTURE(dtype_name(out_dtype));
      const Tensor x = random_f64({c.m, c.k}, 142, -3.0, 3.0).to(DType::f32);
      const Tensor w = random_f64({c.n, c.k}, 143, -0.5, 0.5).to(DType::f32);
      auto quantize = [&](const Tensor& t, DType format) {
        const double max = format == DType::f8_e4m3 ? 448.0 : 57344.0;
        const Tensor scale = Tensor::empty({c.rows ? t.size(0) : 1, 1}, DType::f32);
        const Tensor codes = Tensor::empty(t.shape(), format);
        cpu().fp8_scale(t, max, false, scale);
        cpu().fp8_quantize(t, scale, codes);
        return std::pair{codes, scale};
      };
      const auto [qa, sa] = quantize(x, c.fa);
      const auto [qb, sb] = quantize(w, c.fb);
      const Tensor oc = Tensor::empty({c.m, c.n}, out_dtype), og = Tensor::empty({c.m, c.n}, out_dtype, kGpu);
      cpu().fp8_gemm(qa, sa, qb, sb, oc);
#if defined(QTUNE_CUDA_SIM)
      const uint64_t before = sim::fp8_matmul_count();
#endif
      gpu().fp8_gemm(qa.to(kGpu), sa.to(kGpu), qb.to(kGpu), sb.to(kGpu), og);
#if defined(QTUNE_CUDA_SIM)
      // Multiples of 16 reach cuBLASLt's fp8 GEMM (per-row scales as outer vectors); the rest its f32 GEMM.
      CHECK(sim::fp8_matmul_count() - before == (c.k % 16 == 0 && c.n % 16 == 0 ? 1u : 0u));
#endif
      // Products of codes scaled once against values dequantized one by one: a few f32 ulps of the sums
      // (and the tensor cores' own accumulation on a GPU).
      const double tol = out_dtype == DType::f32 ? kFp8SumTol : 1e-2;
      QTUNE_CHECK_CLOSE(og, oc, tol, tol);
    }
  }
  const Tensor a = Tensor::zeros({4, 32}, DType::f8_e5m2, kGpu), s = Tensor::ones({1, 1}, DType::f32, kGpu);
  CHECK_THROWS_WITH_AS(gpu().fp8_gemm(a, s, a, s, Tensor::empty({4, 4}, DType::f32, kGpu)),
                       doctest::Contains("not both e5m2"), Error);
}

TEST_CASE("float8_linear on the GPU matches the CPU emulation for every recipe") {
  for (auto recipe :
       {quant::Float8Recipe::tensorwise, quant::Float8Recipe::rowwise, quant::Float8Recipe::rowwise_with_gw_hp}) {
    CAPTURE(static_cast<int>(recipe));
    const Tensor x = random_f64({64, 32}, 82).to(DType::f32), w = random_f64({48, 32}, 83).to(DType::f32);
    const Tensor dy = random_f64({64, 48}, 84).to(DType::f32);
    std::vector<Tensor> results[2];
    for (int on_gpu = 0; on_gpu < 2; ++on_gpu) {
      Tensor xi = on_gpu ? x.to(kGpu) : x.clone(), wi = on_gpu ? w.to(kGpu) : w.clone();
      xi.requires_grad_(true);
      wi.requires_grad_(true);
      const Tensor y = quant::float8_linear(xi, wi, Tensor(), recipe, recipe != quant::Float8Recipe::tensorwise);
      y.backward(on_gpu ? dy.to(kGpu) : dy);
      results[on_gpu] = {y.to(Device::cpu()), xi.grad().to(Device::cpu()), wi.grad().to(Device::cpu())};
    }
    // The same fp8 operands; only the GEMMs' summation differs.
    for (size_t i = 0; i < 3; ++i) QTUNE_CHECK_CLOSE(results[1][i], results[0][i], kFp8SumTol, kFp8SumTol);
  }
}

TEST_CASE("swiglu forward and backward match the CPU") {
  for (DType t : {DType::f32, DType::bf16, DType::f16, DType::f64}) {
    CAPTURE(dtype_name(t));
    // The CPU's exp is its own vectorized polynomial, the GPU's the device library's: a few ulps apart.
    const double tol = t == DType::f64 ? 1e-12 : t == DType::f32 ? 1e-5 : 1e-2;
    const Tensor g = random_f64({1027}, 120, -8.0, 8.0).to(t), u = random_f64({1027}, 121).to(t);
    const Tensor d = random_f64({1027}, 122).to(t);
    const Tensor oc = Tensor::empty({1027}, t), og = Tensor::empty({1027}, t, kGpu);
    cpu().swiglu(g, u, oc);
    gpu().swiglu(g.to(kGpu), u.to(kGpu), og);
    QTUNE_CHECK_CLOSE(og, oc, tol, tol);
    const Tensor ggc = Tensor::empty({1027}, t), guc = Tensor::empty({1027}, t);
    const Tensor ggg = Tensor::empty({1027}, t, kGpu), gug = Tensor::empty({1027}, t, kGpu);
    cpu().swiglu_backward(g, u, d, ggc, guc);
    gpu().swiglu_backward(g.to(kGpu), u.to(kGpu), d.to(kGpu), ggg, gug);
    QTUNE_CHECK_CLOSE(ggg, ggc, tol, tol);
    QTUNE_CHECK_CLOSE(gug, guc, tol, tol);
  }
  const Tensor a = Tensor::zeros({4}, DType::f32, kGpu);
  CHECK_THROWS_WITH_AS(gpu().swiglu(a, Tensor::zeros({5}, DType::f32, kGpu), a), doctest::Contains("must match gate"),
                       Error);
}

TEST_CASE("softmax and log_softmax, forward and backward, match the CPU row by row") {
  for (DType t : {DType::f32, DType::bf16, DType::f64}) {
    for (int64_t cols : {int64_t{1}, int64_t{7}, int64_t{1000}}) {
      CAPTURE(dtype_name(t));
      CAPTURE(cols);
      // Another summation order than the CPU's: close, not equal.
      const double tol = t == DType::f64 ? 1e-12 : t == DType::f32 ? 1e-5 : 1e-2;
      std::vector<double> v = random_f64({37, cols}, 123, -20.0, 20.0).to_vector<double>();
      v[0] = 1e4;                                                                           // a dominant logit
      for (int64_t c = 0; c < cols; ++c) v[static_cast<size_t>(5 * cols + c)] = -INFINITY;  // an all -inf row
      const Tensor x = Tensor::from_doubles(v, {37, cols}, t), dy = random_f64({37, cols}, 124).to(t);
      for (bool log : {false, true}) {
        CAPTURE(log);
        const Tensor yc = Tensor::empty({37, cols}, t), yg = Tensor::empty({37, cols}, t, kGpu);
        if (log) {
          cpu().log_softmax(x, yc);
          gpu().log_softmax(x.to(kGpu), yg);
        } else {
          cpu().softmax(x, yc);
          gpu().softmax(x.to(kGpu), yg);
        }
        check_same_values(yg.narrow(0, 5, 1), yc.narrow(0, 5, 1));  // NaN or -inf alike
        QTUNE_CHECK_CLOSE(yg.narrow(0, 6, 31), yc.narrow(0, 6, 31), tol, tol);
        QTUNE_CHECK_CLOSE(yg.narrow(0, 0, 5), yc.narrow(0, 0, 5), tol, tol);
        const Tensor dc = Tensor::empty({37, cols}, t), dg = Tensor::empty({37, cols}, t, kGpu);
        if (log) {
          cpu().log_softmax_backward(yc, dy, dc);
          gpu().log_softmax_backward(yc.to(kGpu), dy.to(kGpu), dg);
        } else {
          cpu().softmax_backward(yc, dy, dc);
          gpu().softmax_backward(yc.to(kGpu), dy.to(kGpu), dg);
        }
        QTUNE_CHECK_CLOSE(dg.narrow(0, 6, 31), dc.narrow(0, 6, 31), tol, tol);
      }
    }
  }
  const Tensor a = Tensor::zeros({2, 3}, DType::f32, kGpu);
  CHECK_THROWS_WITH_AS(gpu().softmax(a, Tensor::zeros({2, 3}, DType::f32)), doctest::Contains("is on cpu"), Error);
}

// The tolerance of a kernel whose sums run in another order than the CPU's (and whose exp is the
// device library's): a few ulps of the accumulation type, bf16/f16 outputs one rounding.
double order_tolerance(DType t) { return t == DType::f64 ? 1e-11 : t == DType::f32 ? 2e-5 : 2e-2; }

TEST_CASE("reduce matches the CPU over any dims of strided views, NaN included") {
  for (DType t : {DType::f32, DType::bf16, DType::f64}) {
    CAPTURE(dtype_name(t));
    std::vector<double> v = random_f64({6, 300, 5}, 125, -3.0, 3.0).to_vector<double>();
    v[7] = std::numeric_limits<double>::quiet_NaN();
    const Tensor x = Tensor::from_doubles(v, {6, 300, 5}, t), xg = x.to(kGpu);
    // Contiguous, permuted and narrowed views, the same on both devices; every kind of reduced dims.
    const std::function<Tensor(const Tensor&)> views[] = {[](const Tensor& a) { return a; },
                                                          [](const Tensor& a) {
                                                            return a.permute({2, 0, 1});
                                                          },
                                                          [](const Tensor& a) { return a.narrow(1, 3, 250); }};
    for (const auto& view : views) {
      const Tensor vc = view(x), vg = view(xg);
      for (const std::vector<bool>& keep : {std::vector<bool>{false, false, false},
                                            {true, false, true},
                                            {false, true, false},
                                            {true, true, false},
                                            {true, true, true}}) {
        Shape out_shape = vc.shape();
        for (size_t d = 0; d < 3; ++d)
          if (!keep[d]) out_shape[d] = 1;
        for (ReduceOp op : {ReduceOp::sum, ReduceOp::max, ReduceOp::min, ReduceOp::amax}) {
          CAPTURE(static_cast<int>(op));
          CAPTURE(shape_str(vc.shape()));
          CAPTURE(shape_str(out_shape));
          const Tensor oc = Tensor::empty(out_shape, t), og = Tensor::empty(out_shape, t, kGpu);
          cpu().reduce(op, vc, oc);
          gpu().reduce(op, vg, og);
          if (op == ReduceOp::sum)
            QTUNE_CHECK_CLOSE(og, oc, 1e-14, 1e-12);  // f64 sums in another order, rounded once
          else
            check_same_values(og, oc);
        }
      }
    }
  }
  CHECK_THROWS_WITH_AS(
      gpu().reduce(ReduceOp::sum, Tensor::zeros({2, 3}, DType::f32, kGpu), Tensor::zeros({2, 2}, DType::f32, kGpu)),
      doctest::Contains("cannot reduce [2, 3] to [2, 2]"), Error);
}

TEST_CASE("embedding and its backward match the CPU to the bit; repeated ids sum in order") {
  for (DType t : {DType::f32, DType::bf16, DType::f64}) {
    for (DType it : {DType::i64, DType::i32}) {
      CAPTURE(dtype_name(t));
      CAPTURE(dtype_name(it));
      const Tensor w = random_f64({11, 70}, 126).to(t);
      const Tensor ids = Tensor::from_vector(std::vector<int64_t>{3, 0, 10, 3, 3, 7, 0, 9, 3}, {9}).to(it);
      const Tensor oc = Tensor::empty({9, 70}, t), og = Tensor::empty({9, 70}, t, kGpu);
      cpu().embedding(w, ids, oc);
      gpu().embedding(w.to(kGpu), ids.to(kGpu), og);
      CHECK_SAME_BYTES(og, oc);
      const Tensor g = random_f64({9, 70}, 127, -5.0, 5.0).to(t);
      const Tensor gwc = random_f64({11, 70}, 128).to(t);  // accumulated into
      const Tensor gwg = gwc.to(kGpu);
      cpu().embedding_backward(g, ids, gwc);
      gpu().embedding_backward(g.to(kGpu), ids.to(kGpu), gwg);
      CHECK_SAME_BYTES(gwg, gwc);
    }
  }
}

TEST_CASE("rmsnorm forward and backward match the CPU") {
  for (DType t : {DType::f32, DType::bf16, DType::f64}) {
    for (int64_t rows : {int64_t{1}, int64_t{70}, int64_t{131}}) {
      CAPTURE(dtype_name(t));
      CAPTURE(rows);
      const double tol = order_tolerance(t);
      const Tensor x = random_f64({rows, 300}, 129, -2.0, 2.0).to(t), w = random_f64({300}, 130).to(t);
      const Tensor yc = Tensor::empty({rows, 300}, t), yg = Tensor::empty({rows, 300}, t, kGpu);
      const DType stat = t == DType::f64 ? DType::f64 : DType::f32;
      const Tensor rc = Tensor::empty({rows}, stat), rg = Tensor::empty({rows}, stat, kGpu);
      cpu().rmsnorm(x, w, 1e-5, yc, rc);
      gpu().rmsnorm(x.to(kGpu), w.to(kGpu), 1e-5, yg, rg);
      QTUNE_CHECK_CLOSE(rg, rc, tol, tol);
      QTUNE_CHECK_CLOSE(yg, yc, tol, tol);
      const Tensor dy = random_f64({rows, 300}, 131).to(t);
      const Tensor gxc = Tensor::empty({rows, 300}, t), gwc = Tensor::empty({300}, t);
      const Tensor gxg = Tensor::empty({rows, 300}, t, kGpu), gwg = Tensor::empty({300}, t, kGpu);
      cpu().rmsnorm_backward(dy, x, w, rc, gxc, gwc);
      gpu().rmsnorm_backward(dy.to(kGpu), x.to(kGpu), w.to(kGpu), rc.to(kGpu), gxg, gwg);
      QTUNE_CHECK_CLOSE(gxg, gxc, tol, tol);
      QTUNE_CHECK_CLOSE(gwg, gwc, tol, tol * 10);  // a sum over every row
    }
  }
}

TEST_CASE("rope forward and inverse match the CPU to the bit, in place too") {
  for (DType t : {DType::f32, DType::bf16, DType::f64}) {
    CAPTURE(dtype_name(t));
    const DType table = t == DType::f64 ? DType::f64 : DType::f32;
    const Tensor x = random_f64({2, 5, 3, 8}, 132).to(t);
    const Tensor cos = random_f64({5, 4}, 133).to(table), sin = random_f64({5, 4}, 134).to(table);
    for (bool inverse : {false, true}) {
      const Tensor yc = Tensor::empty({2, 5, 3, 8}, t);
      cpu().rope(x, cos, sin, inverse, yc);
      const Tensor yg = x.to(kGpu);
      gpu().rope(yg, cos.to(kGpu), sin.to(kGpu), inverse, yg);  // y aliases x
      CHECK_SAME_BYTES(yg, yc);
    }
  }
}

TEST_CASE("cross_entropy forward and backward match the CPU: ignore_index, bf16 logits, a 128k vocabulary") {
  for (DType t : {DType::f32, DType::bf16, DType::f64}) {
    for (int64_t vocab : {int64_t{5}, int64_t{1000}, int64_t{128256}}) {
      if (vocab == 128256 && t == DType::f64) continue;  // the size is what this case checks, not the dtype
      CAPTURE(dtype_name(t));
      CAPTURE(vocab);
      const int64_t rows = vocab > 1000 ? 3 : 9;
      const double tol = order_tolerance(t);
      const Tensor logits = random_f64({rows, vocab}, 135, -10.0, 10.0).to(t);
      std::vector<int64_t> tg(static_cast<size_t>(rows));
      for (int64_t r = 0; r < rows; ++r) tg[static_cast<size_t>(r)] = (r * 7919) % vocab;
      tg[1] = -100;  // ignored
      const Tensor targets = Tensor::from_vector(tg, {rows});
      const DType stat = t == DType::f64 ? DType::f64 : DType::f32;
      const Tensor lc = Tensor::empty({rows}, stat), sc = Tensor::empty({rows}, stat);
      const Tensor lg = Tensor::empty({rows}, stat, kGpu), sg = Tensor::empty({rows}, stat, kGpu);
      cpu().cross_entropy(logits, targets, -100, lc, sc);
      gpu().cross_entropy(logits.to(kGpu), targets.to(kGpu), -100, lg, sg);
      QTUNE_CHECK_CLOSE(lg, lc, tol, tol);
      QTUNE_CHECK_CLOSE(sg, sc, tol, tol);
      const Tensor gl = random_f64({rows}, 136).to(stat);
      const Tensor dc = Tensor::empty({rows, vocab}, t), dg = Tensor::empty({rows, vocab}, t, kGpu);
      cpu().cross_entropy_backward(logits, targets, -100, sc, gl, dc);
      gpu().cross_entropy_backward(logits.to(kGpu), targets.to(kGpu), -100, sc.to(kGpu), gl.to(kGpu), dg);
      QTUNE_CHECK_CLOSE(dg, dc, tol, tol);
    }
  }
}

TEST_CASE(
    "attention forward and backward match the CPU: GQA, causal with a KV-cache offset, head dims to 256, bf16 and "
    "f16 on tensor cores") {
  struct Case {
    int64_t batch, tq, tk, hq, hkv, d;
    bool causal;
  };
  const Case cases[] = {{2, 37, 37, 4, 2, 16, true},  {1, 5, 70, 2, 1, 8, true},
                        {2, 33, 20, 2, 2, 12, false}, {1, 9, 4, 1, 1, 8, true},
                        {1, 3, 40, 2, 2, 256, true},  {1, 0, 5, 1, 1, 8, false},
                        {1, 20, 45, 4, 1, 64, true},  {2, 17, 17, 2, 2, 128, false},
                        {1, 20, 4, 2, 1, 16, true}};  // tensor cores with queries that see no key
  for (DType t : {DType::f32, DType::bf16, DType::f16, DType::f64}) {
    for (const Case& c : cases) {
      CAPTURE(dtype_name(t));
      CAPTURE(c.tq);
      CAPTURE(c.tk);
      CAPTURE(c.d);
      const double tol = t == DType::bf16 || t == DType::f16 ? 3e-2 : t == DType::f32 ? 1e-4 : 1e-10;
      const Tensor q = random_f64({c.batch, c.tq, c.hq, c.d}, 137, -2.0, 2.0).to(t);
      const Tensor k = random_f64({c.batch, c.tk, c.hkv, c.d}, 138, -2.0, 2.0).to(t);
      const Tensor v = random_f64({c.batch, c.tk, c.hkv, c.d}, 139).to(t);
      const double scale = 1.0 / std::sqrt(static_cast<double>(c.d));
      const DType stat = t == DType::f64 ? DType::f64 : DType::f32;
      const Tensor oc = Tensor::empty(q.shape(), t), og = Tensor::empty(q.shape(), t, kGpu);
      const Tensor lc = Tensor::empty({c.batch, c.hq, c.tq}, stat),
                   lg = Tensor::empty({c.batch, c.hq, c.tq}, stat, kGpu);
      cpu().attention(q, k, v, scale, c.causal, oc, lc);
#if defined(QTUNE_CUDA_SIM)
      const uint64_t mmas = sim::wmma_mma_count();
#endif
      gpu().attention(q.to(kGpu), k.to(kGpu), v.to(kGpu), scale, c.causal, og, lg);
      QTUNE_CHECK_CLOSE(og, oc, tol, tol);
      QTUNE_CHECK_CLOSE(lg, lc, tol, tol);  // -inf alike where a query sees no key (Tk < Tq)
      const Tensor g = random_f64(q.shape(), 140).to(t);
      const Tensor gqc = Tensor::empty(q.shape(), t), gkc = Tensor::empty(k.shape(), t),
                   gvc = Tensor::empty(k.shape(), t);
      const Tensor gqg = Tensor::empty(q.shape(), t, kGpu), gkg = Tensor::empty(k.shape(), t, kGpu);
      const Tensor gvg = Tensor::empty(k.shape(), t, kGpu);
      cpu().attention_backward(g, q, k, v, oc, lc, scale, c.causal, gqc, gkc, gvc);
      gpu().attention_backward(g.to(kGpu), q.to(kGpu), k.to(kGpu), v.to(kGpu), oc.to(kGpu), lc.to(kGpu), scale,
                               c.causal, gqg, gkg, gvg);
      QTUNE_CHECK_CLOSE(gqg, gqc, tol, tol);
      QTUNE_CHECK_CLOSE(gkg, gkc, tol, tol);
      QTUNE_CHECK_CLOSE(gvg, gvc, tol, tol);
#if defined(QTUNE_CUDA_SIM)
      // bf16 and f16 on whole 16-wide head-dim tiles up to 128 go through the WMMA kernels, nothing else does.
      const bool tensor_cores = (t == DType::bf16 || t == DType::f16) && c.d % 16 == 0 && c.d <= 128 && c.tq > 0;
      CHECK((sim::wmma_mma_count() > mmas) == tensor_cores);
#endif
    }
  }
  const Tensor big = Tensor::zeros({1, 2, 1, 264}, DType::f32, kGpu), lse = Tensor::empty({1, 1, 2}, DType::f32, kGpu);
  CHECK_THROWS_WITH_AS(gpu().attention(big, big, big, 1.0, true, big, lse), doctest::Contains("head dim 264"), Error);
}

// Device faults: a value that lives on the GPU (an id, a target) is checked inside the kernel; a bad one
// stops the kernel, and the error, naming the value, surfaces when the stream is next waited for. The
// error is sticky, as a GPU's is, so each case runs in a process of its own (tests/CMakeLists.txt).
TEST_CASE("device fault: embedding id out of range") {
  const Tensor w = Tensor::zeros({4, 8}, DType::f32, kGpu), out = Tensor::empty({2, 8}, DType::f32, kGpu);
  const Tensor bad = Tensor::from_vector(std::vector<int64_t>{1, 4}, {2}, kGpu);
  gpu().embedding(w, bad, out);
  CHECK_THROWS_WITH_AS(gpu().synchronize(),
                       doctest::Contains("id 4 at position 1 is out of range for a vocabulary of V = 4"), Error);
}

TEST_CASE("device fault: cross_entropy target out of range") {
  const Tensor logits = Tensor::zeros({2, 7}, DType::f32, kGpu), stat = Tensor::empty({2}, DType::f32, kGpu);
  const Tensor bad = Tensor::from_vector(std::vector<int64_t>{0, 9}, {2}, kGpu);
  gpu().cross_entropy(logits, bad, -100, stat, Tensor::empty({2}, DType::f32, kGpu));
  CHECK_THROWS_WITH_AS(gpu().synchronize(), doctest::Contains("target 9 at row 1 is out of range for V = 7"), Error);
}

// QAT ------------------------------------------------------------------------------------------------------

TEST_CASE("QAT fake quantization matches the CPU to the bit: every scheme, f32 and bf16, and the mask") {
  using numerics::FakeQuantKind;
  const numerics::FakeQuantSpec specs[] = {{FakeQuantKind::intx_symmetric, -8, 7, -1.0, 32},
                                           {FakeQuantKind::intx_asymmetric, -128, 127, 1.1920928955078125e-07, 0},
                                           {FakeQuantKind::int4_weight_only, 0, 15, -1.0, 64},
                                           {FakeQuantKind::q4_0, 0, 15, -1.0, 32},
                                           {FakeQuantKind::q8_0, -127, 127, -1.0, 32}};
  for (const DType dt : {DType::f32, DType::bf16}) {
    const Tensor x = random_f64({24, 128}, 91, -3.0, 3.0).to(dt);
    for (const auto& spec : specs) {
      CAPTURE(static_cast<int>(spec.kind));
      Tensor out_c = Tensor::empty(x.shape(), dt), mask_c = Tensor::empty(x.shape(), DType::u8);
      Tensor out_g = Tensor::empty(x.shape(), dt, kGpu), mask_g = Tensor::empty(x.shape(), DType::u8, kGpu);
      cpu().fake_quantize(x, spec, out_c, mask_c);
      gpu().fake_quantize(x.to(kGpu), spec, out_g, mask_g);
      CHECK_SAME_BYTES(out_g, out_c);
      CHECK_SAME_BYTES(mask_g, mask_c);
      const Tensor g = random_f64(x.shape(), 92).to(dt);
      Tensor gx_c = Tensor::empty(x.shape(), dt), gx_g = Tensor::empty(x.shape(), dt, kGpu);
      cpu().fake_quantize_backward(g, mask_c, gx_c);
      gpu().fake_quantize_backward(g.to(kGpu), mask_g, gx_g);
      CHECK_SAME_BYTES(gx_g, gx_c);
    }
  }
}

TEST_CASE("QAT 8da4w: per-token int8 codes match the CPU exactly; the int8 x int4 GEMM to f32 rounding") {
  const numerics::FakeQuantSpec act{numerics::FakeQuantKind::intx_asymmetric, -128, 127, 1.1920928955078125e-07, 0};
  const Tensor x = random_f64({9, 256}, 93, -4.0, 4.0).to(DType::f32);
  Tensor codes_c = Tensor::empty(x.shape(), DType::i8), scale_c = Tensor::empty({9}),
         zp_c = Tensor::empty({9}, DType::i32);
  Tensor codes_g = Tensor::empty(x.shape(), DType::i8, kGpu), scale_g = Tensor::empty({9}, DType::f32, kGpu),
         zp_g = Tensor::empty({9}, DType::i32, kGpu);
  cpu().quantize_per_token(x, act, codes_c, scale_c, zp_c);
  gpu().quantize_per_token(x.to(kGpu), act, codes_g, scale_g, zp_g);
  CHECK_SAME_BYTES(codes_g, codes_c);
  CHECK_SAME_BYTES(scale_g, scale_c);
  CHECK_SAME_BYTES(zp_g, zp_c);
  // Random packed weights: every byte value, scales of one group size 64.
  const Tensor w = random_f64({40, 128}, 94, 0.0, 256.0).to(DType::u8);
  const Tensor ws = random_f64({40, 4}, 95, 0.01, 0.1).to(DType::f32);
  Tensor out_c = Tensor::empty({9, 40}), out_g = Tensor::empty({9, 40}, DType::f32, kGpu);
  cpu().int8_int4_linear(codes_c, scale_c, zp_c, w, ws, out_c);
  gpu().int8_int4_linear(codes_g, scale_g, zp_g, w.to(kGpu), ws.to(kGpu), out_g);
  // The CPU's VNNI kernel folds the zero point in after an f32 sum of lanes: close, not equal.
  QTUNE_CHECK_CLOSE(out_g.to(Device::cpu()), out_c, 1e-5, 1e-5);
  // The CPU's portable kernel sums exactly as the GPU does (int32 per group, then group by group in f32).
  ::setenv("QTUNE_INT4_PORTABLE", "1", 1);
  cpu().int8_int4_linear(codes_c, scale_c, zp_c, w, ws, out_c);
  ::unsetenv("QTUNE_INT4_PORTABLE");
  CHECK_SAME_BYTES(out_g, out_c);
}

TEST_CASE("int8_int4_linear with an odd group size reads no byte past the packed weights") {
  // K = 6 in groups of 3: the packed byte of elements 2 and 3 straddles two groups, and an element loop
  // stepping by two would read element 6, one byte past the last row.
  const Tensor q = random_f64({5, 6}, 96, -128.0, 127.0).to(DType::i8);
  const Tensor xs = random_f64({5}, 97, 0.01, 0.1).to(DType::f32), xz = random_f64({5}, 98, -5, 5).to(DType::i32);
  const Tensor w = random_f64({7, 3}, 99, 0.0, 256.0).to(DType::u8);
  const Tensor ws = random_f64({7, 2}, 100, 0.01, 0.1).to(DType::f32);
  Tensor out_c = Tensor::empty({5, 7}), out_g = Tensor::empty({5, 7}, DType::f32, kGpu);
  cpu().int8_int4_linear(q, xs, xz, w, ws, out_c);
  gpu().int8_int4_linear(q.to(kGpu), xs.to(kGpu), xz.to(kGpu), w.to(kGpu), ws.to(kGpu), out_g);
  CHECK_SAME_BYTES(out_g, out_c);
}

TEST_CASE("every CUDA entry point refuses a tensor of another device") {
  const Tensor g = Tensor::zeros({4, 4}, DType::f32, kGpu), h = Tensor::zeros({4, 4}, DType::f32);
  const Tensor g3 = g.view({1, 4, 4}), h3 = h.view({1, 4, 4}), out = Tensor::zeros({1}, DType::f64, kGpu);
  const auto on_cpu = doctest::Contains("is on cpu, expected cuda:0");
  CHECK_THROWS_WITH_AS(gpu().gemm(g3, false, h3, false, g3, 1.0, 0.0), on_cpu, Error);
  CHECK_THROWS_WITH_AS(gpu().unary(UnaryOp::neg, h, g), on_cpu, Error);
  CHECK_THROWS_WITH_AS(gpu().binary(BinaryOp::add, g, h, g), on_cpu, Error);
  CHECK_THROWS_WITH_AS(gpu().affine(g, 1.0, 0.0, h), on_cpu, Error);
  CHECK_THROWS_WITH_AS(gpu().pow_scalar(h, 2.0, g), on_cpu, Error);
  CHECK_THROWS_WITH_AS(gpu().fill(h, 1.0), on_cpu, Error);
  CHECK_THROWS_WITH_AS(gpu().fill_uniform(h, 1, 0, 0.0, 1.0), on_cpu, Error);
  CHECK_THROWS_WITH_AS(gpu().fill_normal(h, 1, 0, 0.0, 1.0), on_cpu, Error);
  CHECK_THROWS_WITH_AS(gpu().dropout(h, 0.5, 1, 0, g), on_cpu, Error);
  CHECK_THROWS_WITH_AS(gpu().squared_norm(h, out), on_cpu, Error);
  const Tensor w = Tensor::zeros({128}, DType::f32);
  const Tensor codes = Tensor::empty({64}, DType::u8, kGpu), scalers = Tensor::empty({2}, DType::i8, kGpu);
  const Tensor factors = Tensor::empty({1}, DType::f32, kGpu), mean = Tensor::empty({1}, DType::f32, kGpu);
  CHECK_THROWS_WITH_AS(gpu().nf4_quantize(w, codes, scalers, factors, mean), on_cpu, Error);
  CHECK_THROWS_WITH_AS(gpu().nf4_dequantize(codes, scalers, factors, mean, 0, w), on_cpu, Error);
}

TEST_CASE("fp8_scale of an empty tensor launches nothing") {
  const Tensor x = Tensor::empty({0, 8}, DType::f32, kGpu);
  const Tensor per_row = Tensor::empty({0, 1}, DType::f32, kGpu);
  CHECK_NOTHROW(gpu().fp8_scale(x, 448.0, false, per_row));
  gpu().synchronize();
  // One tensorwise slot: the scale of an all-empty tensor is what the CPU gives.
  const Tensor sg = Tensor::empty({1, 1}, DType::f32, kGpu), sc = Tensor::empty({1, 1}, DType::f32);
  gpu().fp8_scale(x, 448.0, false, sg);
  cpu().fp8_scale(Tensor::empty({0, 8}, DType::f32), 448.0, false, sc);
  check_same_values(sg, sc);
}
// NF4
TEST_CASE("NF4 quantize and dequantize match the CPU to the bit") {
  // Both sides run engine/numerics/nf4.h with the absmax mean summed in the same fixed chunk order.
  for (DType t : {DType::f32, DType::bf16}) {
    for (int64_t n : {int64_t{150}, int64_t{16384}, int64_t{64 * 4096 * 3 + 100}}) {
      CAPTURE(dtype_name(t));
      CAPTURE(n);
      std::vector<double> v = random_f64({n}, 80, -0.1, 0.1).to_vector<double>();
      for (int64_t i = 64; i < 128 && i < n; ++i) v[i] = 0.0;  // a zero block
      const Tensor w = Tensor::from_doubles(v, {n}, t), wg = w.to(kGpu);
      const int64_t blocks = (n + 63) / 64, scaler_blocks = (blocks + 255) / 256;
      auto parts = [&](Device d) {
        return std::vector<Tensor>{Tensor::empty({blocks * 32}, DType::u8, d), Tensor::empty({blocks}, DType::i8, d),
                                   Tensor::empty({scaler_blocks}, t, d), Tensor::empty({1}, t, d)};
      };
      const std::vector<Tensor> pc = parts(Device::cpu()), pg = parts(kGpu);
      cpu().nf4_quantize(w, pc[0], pc[1], pc[2], pc[3]);
      gpu().nf4_quantize(wg, pg[0], pg[1], pg[2], pg[3]);
      for (size_t i = 0; i < pc.size(); ++i) CHECK_SAME_BYTES(pg[i], pc[i]);
      for (DType out_t : {t, DType::f32}) {
        const int64_t first = n > 1000 ? 37 : 0, count = n - first;
        const Tensor oc = Tensor::empty({count}, out_t), og = Tensor::empty({count}, out_t, kGpu);
        cpu().nf4_dequantize(pc[0], pc[1], pc[2], pc[3], first, oc);
        gpu().nf4_dequantize(pg[0], pg[1], pg[2], pg[3], first, og);
        CHECK_SAME_BYTES(og, oc);
      }
    }
  }
}
