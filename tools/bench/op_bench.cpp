// Per-op microbenchmarks (Google Benchmark). The differentiable ops are timed through the op layer
// (what training pays, allocation and autograd included); the fused model kernels through the
// Backend interface, whose signatures are the stable contract. Throughput counters: "bytes/s" for
// memory-bound kernels (bytes read + written once), "FLOP/s" for compute-bound ones.
#include <benchmark/benchmark.h>

#include <utility>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/rng.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"
#include "ops/reduce.h"
#include "quant/float8_linear.h"
#include "quant/int8_dyn_act_int4_weight_linear.h"
#include "quant/linear_nf4.h"
#include "quant/nf4_tensor.h"
#include "quant/qat_config.h"
#include "quant/qat_fake_quantize.h"

using namespace qtune;

namespace {

Backend& cpu() { return backend_for(Device::cpu()); }

Tensor uniform(const Shape& shape, uint64_t seed, DType dt = DType::f32, double low = -1.0, double high = 1.0) {
  Tensor t = Tensor::empty(shape, dt);
  cpu().fill_uniform(t, seed, 0, low, high);
  return t;
}

// One untimed call first (also the warm-up); a kernel that throws (a backend without it, a shape it refuses)
// shows up as a skipped benchmark with the error instead of ending the run.
template <class F>
bool runs(benchmark::State& s, F&& f) {
  try {
    f();
    return true;
  } catch (const Error& e) {
    s.SkipWithError(e.what());
    return false;
  }
}

void bytes_rate(benchmark::State& s, double bytes) {
  s.counters["bytes/s"] =
      benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1024);
}
void flop_rate(benchmark::State& s, double flops) {
  s.counters["FLOP/s"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
}

// Llama-like small shapes: 512 tokens of a 2048-wide model (TinyLlama: 32 heads of 64, MLP 5632, vocab 32000).
constexpr int64_t kTokens = 512, kHidden = 2048, kMlp = 5632, kHeads = 32, kKvHeads = 4, kHeadDim = 64, kVocab = 32000;

void BM_cast_f32_to_bf16(benchmark::State& s) {
  const int64_t n = s.range(0);
  Tensor x = uniform({n}, 1), y = Tensor::empty({n}, DType::bf16);
  for (auto _ : s) cpu().copy(x, y);
  bytes_rate(s, double(n) * (4 + 2));
}
BENCHMARK(BM_cast_f32_to_bf16)->Arg(1 << 20)->Arg(1 << 24)->UseRealTime();

void BM_copy_f32_strided(benchmark::State& s) {
  // A transpose copy: the layout change attention's head split needs.
  Tensor x = uniform({kTokens, kHidden}, 2), y = Tensor::empty({kHidden, kTokens});
  for (auto _ : s) cpu().copy(x.transpose(0, 1), y);
  bytes_rate(s, double(kTokens * kHidden) * 8);
}
BENCHMARK(BM_copy_f32_strided)->UseRealTime();

void BM_add_broadcast(benchmark::State& s) {
  Tensor a = uniform({kTokens, kHidden}, 3), b = uniform({kHidden}, 4);
  for (auto _ : s) benchmark::DoNotOptimize(ops::add(a, b));
  bytes_rate(s, double(kTokens * kHidden) * 8 + double(kHidden) * 4);
}
BENCHMARK(BM_add_broadcast)->UseRealTime();

void BM_reduce_sum_rows(benchmark::State& s) {
  Tensor x = uniform({kTokens, kVocab}, 5);
  for (auto _ : s) benchmark::DoNotOptimize(ops::sum(x, {1}));
  bytes_rate(s, double(kTokens * kVocab) * 4);
}
BENCHMARK(BM_reduce_sum_rows)->UseRealTime();

void BM_linear_forward(benchmark::State& s) {
  NoGradGuard no_grad;
  Tensor x = uniform({kTokens, kHidden}, 6), w = uniform({kMlp, kHidden}, 7, DType::f32, -0.02, 0.02);
  for (auto _ : s) benchmark::DoNotOptimize(ops::linear(x, w));
  flop_rate(s, 2.0 * kTokens * kHidden * kMlp);
}
BENCHMARK(BM_linear_forward)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_linear_forward_backward(benchmark::State& s) {
  Tensor x = uniform({kTokens, kHidden}, 8).requires_grad_();
  Tensor w = uniform({kMlp, kHidden}, 9, DType::f32, -0.02, 0.02).requires_grad_();
  Tensor gy = uniform({kTokens, kMlp}, 10);
  for (auto _ : s) {
    x.zero_grad(), w.zero_grad();
    ops::linear(x, w).backward(gy);
    benchmark::DoNotOptimize(w.grad());
  }
  flop_rate(s, 6.0 * kTokens * kHidden * kMlp);  // forward + grad_x + grad_w
}
BENCHMARK(BM_linear_forward_backward)->UseRealTime()->Unit(benchmark::kMillisecond);

// Float8: the same linear through quant::float8_linear, one recipe per argument (0 tensorwise, 1 rowwise,
// 2 rowwise_with_gw_hp). On CPU the fp8 GEMMs are emulated (quantize, dequantize, f32 GEMM): the figure
// is the emulation's overhead over BM_linear_forward_backward, not an fp8 speedup.
void BM_float8_linear_forward_backward(benchmark::State& s) {
  const auto recipe = static_cast<quant::Float8Recipe>(s.range(0));
  const bool pow2 = recipe != quant::Float8Recipe::tensorwise;
  Tensor x = uniform({kTokens, kHidden}, 8).requires_grad_();
  Tensor w = uniform({kMlp, kHidden}, 9, DType::f32, -0.02, 0.02).requires_grad_();
  Tensor gy = uniform({kTokens, kMlp}, 10);
  for (auto _ : s) {
    x.zero_grad(), w.zero_grad();
    quant::float8_linear(x, w, Tensor(), recipe, pow2).backward(gy);
    benchmark::DoNotOptimize(w.grad());
  }
  flop_rate(s, 6.0 * kTokens * kHidden * kMlp);
}
BENCHMARK(BM_float8_linear_forward_backward)->DenseRange(0, 2)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_rmsnorm_forward(benchmark::State& s) {
  Tensor x = uniform({kTokens, kHidden}, 11), w = uniform({kHidden}, 12), y = Tensor::empty({kTokens, kHidden});
  Tensor rstd = Tensor::empty({kTokens});
  if (!runs(s, [&] { cpu().rmsnorm(x, w, 1e-5, y, rstd); })) return;
  for (auto _ : s) cpu().rmsnorm(x, w, 1e-5, y, rstd);
  bytes_rate(s, double(kTokens * kHidden) * 8);
}
BENCHMARK(BM_rmsnorm_forward)->UseRealTime();

void BM_rmsnorm_backward(benchmark::State& s) {
  Tensor x = uniform({kTokens, kHidden}, 13), w = uniform({kHidden}, 14), y = Tensor::empty({kTokens, kHidden});
  Tensor rstd = Tensor::empty({kTokens}), gy = uniform({kTokens, kHidden}, 15), gx = Tensor::empty({kTokens, kHidden});
  Tensor gw = Tensor::empty({kHidden});
  if (!runs(s, [&] { cpu().rmsnorm(x, w, 1e-5, y, rstd); })) return;
  if (!runs(s, [&] { cpu().rmsnorm_backward(gy, x, w, rstd, gx, gw); })) return;
  for (auto _ : s) cpu().rmsnorm_backward(gy, x, w, rstd, gx, gw);
  bytes_rate(s, double(kTokens * kHidden) * 12);
}
BENCHMARK(BM_rmsnorm_backward)->UseRealTime();

void BM_rope(benchmark::State& s) {
  Tensor x = uniform({1, kTokens, kHeads, kHeadDim}, 16), y = Tensor::empty({1, kTokens, kHeads, kHeadDim});
  Tensor cos = uniform({kTokens, kHeadDim / 2}, 17), sin = uniform({kTokens, kHeadDim / 2}, 18);
  if (!runs(s, [&] { cpu().rope(x, cos, sin, false, y); })) return;
  for (auto _ : s) cpu().rope(x, cos, sin, false, y);
  bytes_rate(s, double(kTokens * kHeads * kHeadDim) * 8);
}
BENCHMARK(BM_rope)->UseRealTime();

void BM_swiglu_forward(benchmark::State& s) {
  Tensor g = uniform({kTokens, kMlp}, 19), u = uniform({kTokens, kMlp}, 20), y = Tensor::empty({kTokens, kMlp});
  if (!runs(s, [&] { cpu().swiglu(g, u, y); })) return;
  for (auto _ : s) cpu().swiglu(g, u, y);
  bytes_rate(s, double(kTokens * kMlp) * 12);
}
BENCHMARK(BM_swiglu_forward)->UseRealTime();

void BM_swiglu_backward(benchmark::State& s) {
  Tensor g = uniform({kTokens, kMlp}, 21), u = uniform({kTokens, kMlp}, 22), gy = uniform({kTokens, kMlp}, 23);
  Tensor gg = Tensor::empty({kTokens, kMlp}), gu = Tensor::empty({kTokens, kMlp});
  if (!runs(s, [&] { cpu().swiglu_backward(g, u, gy, gg, gu); })) return;
  for (auto _ : s) cpu().swiglu_backward(g, u, gy, gg, gu);
  bytes_rate(s, double(kTokens * kMlp) * 20);
}
BENCHMARK(BM_swiglu_backward)->UseRealTime();

// Causal GQA attention in f32 (second argument 0) or bf16 (1); FLOPs count the two matrix products over the
// visible half of the scores. bf16 runs its tiles on AVX512-BF16 where the CPU has it, unless
// QTUNE_GEMM_WIDEN=1 (then in f32, as f32 does).
double attention_flops(int64_t t) { return 2.0 * 2.0 * double(t) * double(t) / 2.0 * kHeads * kHeadDim; }
DType attention_dtype(const benchmark::State& s) { return s.range(1) == 1 ? DType::bf16 : DType::f32; }

void BM_attention_forward(benchmark::State& s) {
  const int64_t t = s.range(0);
  const DType dt = attention_dtype(s);
  Tensor q = uniform({1, t, kHeads, kHeadDim}, 24, dt), k = uniform({1, t, kKvHeads, kHeadDim}, 25, dt);
  Tensor v = uniform({1, t, kKvHeads, kHeadDim}, 26, dt), out = Tensor::empty({1, t, kHeads, kHeadDim}, dt);
  Tensor lse = Tensor::empty({1, kHeads, t});
  if (!runs(s, [&] { cpu().attention(q, k, v, 0.125, true, out, lse); })) return;
  for (auto _ : s) cpu().attention(q, k, v, 0.125, true, out, lse);
  flop_rate(s, attention_flops(t));
}
BENCHMARK(BM_attention_forward)->Args({512, 0})->Args({512, 1})->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_attention_backward(benchmark::State& s) {
  const int64_t t = s.range(0);
  const DType dt = attention_dtype(s);
  Tensor q = uniform({1, t, kHeads, kHeadDim}, 27, dt), k = uniform({1, t, kKvHeads, kHeadDim}, 28, dt);
  Tensor v = uniform({1, t, kKvHeads, kHeadDim}, 29, dt), out = Tensor::empty({1, t, kHeads, kHeadDim}, dt);
  Tensor lse = Tensor::empty({1, kHeads, t}), gout = uniform({1, t, kHeads, kHeadDim}, 30, dt);
  Tensor gq = Tensor::empty(q.shape(), dt), gk = Tensor::empty(k.shape(), dt), gv = Tensor::empty(v.shape(), dt);
  if (!runs(s, [&] { cpu().attention(q, k, v, 0.125, true, out, lse); })) return;
  if (!runs(s, [&] { cpu().attention_backward(gout, q, k, v, out, lse, 0.125, true, gq, gk, gv); })) return;
  for (auto _ : s) cpu().attention_backward(gout, q, k, v, out, lse, 0.125, true, gq, gk, gv);
  flop_rate(s, 2.5 * attention_flops(t));  // recomputed scores + dV, dP, dQ, dK products
}
BENCHMARK(BM_attention_backward)->Args({512, 0})->Args({512, 1})->UseRealTime()->Unit(benchmark::kMillisecond);

Tensor targets(int64_t n) {
  Tensor t = Tensor::empty({n}, DType::i64);
  auto* p = static_cast<int64_t*>(t.data_ptr());
  for (int64_t i = 0; i < n; ++i) p[i] = (i * 7919) % kVocab;
  return t;
}

void BM_cross_entropy_forward(benchmark::State& s) {
  Tensor logits = uniform({kTokens, kVocab}, 31, DType::f32, -4, 4), tg = targets(kTokens);
  Tensor loss = Tensor::empty({kTokens}), lse = Tensor::empty({kTokens});
  if (!runs(s, [&] { cpu().cross_entropy(logits, tg, -100, loss, lse); })) return;
  for (auto _ : s) cpu().cross_entropy(logits, tg, -100, loss, lse);
  bytes_rate(s, double(kTokens * kVocab) * 4);
}
BENCHMARK(BM_cross_entropy_forward)->UseRealTime();

void BM_cross_entropy_backward(benchmark::State& s) {
  Tensor logits = uniform({kTokens, kVocab}, 32, DType::f32, -4, 4), tg = targets(kTokens);
  Tensor loss = Tensor::empty({kTokens}), lse = Tensor::empty({kTokens}), gl = Tensor::ones({kTokens});
  Tensor glogits = Tensor::empty({kTokens, kVocab});
  if (!runs(s, [&] { cpu().cross_entropy(logits, tg, -100, loss, lse); })) return;
  if (!runs(s, [&] { cpu().cross_entropy_backward(logits, tg, -100, lse, gl, glogits); })) return;
  for (auto _ : s) cpu().cross_entropy_backward(logits, tg, -100, lse, gl, glogits);
  bytes_rate(s, double(kTokens * kVocab) * 8);
}
BENCHMARK(BM_cross_entropy_backward)->UseRealTime();

// One optimizer update over a TinyLlama MLP projection's parameters (kMlp x kHidden, 11.5 M elements).
// Bytes: param and grad read, param written, plus the f32 state read and written.
void BM_adamw_step(benchmark::State& s) {
  const DType dt = s.range(0) == 16 ? DType::bf16 : DType::f32;
  const int64_t n = kMlp * kHidden;
  Tensor p = uniform({n}, 33, dt), g = uniform({n}, 34, dt, -1e-3, 1e-3);
  Tensor m = Tensor::zeros({n}), v = Tensor::zeros({n});
  int64_t step = 0;
  if (!runs(s, [&] { cpu().adamw_step(p, g, m, v, 1e-5, 0.9, 0.999, 1e-8, 0.01, ++step); })) return;
  for (auto _ : s) cpu().adamw_step(p, g, m, v, 1e-5, 0.9, 0.999, 1e-8, 0.01, ++step);
  bytes_rate(s, double(n) * (3.0 * double(dtype_size(dt)) + 16.0));
}
BENCHMARK(BM_adamw_step)->Arg(32)->Arg(16)->ArgName("param_bits")->UseRealTime()->Unit(benchmark::kMillisecond);

// Mixed precision's update of the same parameters: a bf16 gradient into the f32 master, rounded into the bf16
// parameter. fused:1 is the CPU's one pass; fused:0 the Backend default's three (widen the gradient, update,
// round). Bytes: what one pass moves (grad read, master and state read and written, param written), so the
// three-step rate is that of the same work.
void BM_adamw_step_master(benchmark::State& s) {
  const int64_t n = kMlp * kHidden;
  Tensor w = uniform({n}, 33), p = w.to(DType::bf16), g = uniform({n}, 34, DType::bf16, -1e-3, 1e-3);
  Tensor m = Tensor::zeros({n}), v = Tensor::zeros({n});
  int64_t step = 0;
  auto update = [&] {
    if (s.range(0) == 1)
      cpu().adamw_step_master(p, w, g, m, v, 1e-5, 0.9, 0.999, 1e-8, 0.01, ++step);
    else
      cpu().Backend::adamw_step_master(p, w, g, m, v, 1e-5, 0.9, 0.999, 1e-8, 0.01, ++step);
  };
  if (!runs(s, update)) return;
  for (auto _ : s) update();
  bytes_rate(s, double(n) * 28.0);
}
BENCHMARK(BM_adamw_step_master)->Arg(1)->Arg(0)->ArgName("fused")->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_sgd_momentum_step(benchmark::State& s) {
  const int64_t n = kMlp * kHidden;
  Tensor p = uniform({n}, 35), g = uniform({n}, 36, DType::f32, -1e-3, 1e-3), b = Tensor::zeros({n});
  if (!runs(s, [&] { cpu().sgd_step(p, g, b, 1e-3, 0.9, 0.0, false, 0.0, false); })) return;
  for (auto _ : s) cpu().sgd_step(p, g, b, 1e-3, 0.9, 0.0, false, 0.0, false);
  bytes_rate(s, double(n) * 20.0);
}
BENCHMARK(BM_sgd_momentum_step)->UseRealTime()->Unit(benchmark::kMillisecond);

// The sum of squares behind gradient-norm clipping.
void BM_squared_norm(benchmark::State& s) {
  const int64_t n = kMlp * kHidden;
  Tensor g = uniform({n}, 37), out = Tensor::empty({1}, DType::f64);
  if (!runs(s, [&] { cpu().squared_norm(g, out); })) return;
  for (auto _ : s) cpu().squared_norm(g, out);
  bytes_rate(s, double(n) * 4.0);
}
BENCHMARK(BM_squared_norm)->UseRealTime()->Unit(benchmark::kMillisecond);

// QAT: the converted 8da4w linear (int8 per-token activations x packed int4 weights, group 32) against
// the f32 linear it replaces, at Llama-7B's projection shapes (in -> out: attention 4096 -> 4096, MLP
// 4096 -> 11008 and 11008 -> 4096) for decode-like (1, 16) and prefill-like (256) token counts.
void llama7b_linear_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"tokens", "in", "out"});
  for (const auto& [in, out] : {std::pair<int64_t, int64_t>{4096, 4096}, {4096, 11008}, {11008, 4096}})
    for (const int64_t tokens : {1, 16, 256}) b->Args({tokens, in, out});
}

void BM_linear_f32_llama7b(benchmark::State& s) {
  NoGradGuard no_grad;
  const int64_t tokens = s.range(0), in = s.range(1), out = s.range(2);
  Tensor x = uniform({tokens, in}, 38), w = uniform({out, in}, 39, DType::f32, -0.02, 0.02);
  for (auto _ : s) benchmark::DoNotOptimize(ops::linear(x, w));
  flop_rate(s, 2.0 * double(tokens) * double(in) * double(out));
}
BENCHMARK(BM_linear_f32_llama7b)->Apply(llama7b_linear_args)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_linear_8da4w_llama7b(benchmark::State& s) {
  NoGradGuard no_grad;
  const int64_t tokens = s.range(0), in = s.range(1), out = s.range(2);
  Tensor x = uniform({tokens, in}, 38), w = uniform({out, in}, 39, DType::f32, -0.02, 0.02);
  quant::Int8DynActInt4WeightLinear linear(w, Tensor(), quant::Int8DynActInt4Weight{32});
  for (auto _ : s) benchmark::DoNotOptimize(linear.forward(x));
  flop_rate(s, 2.0 * double(tokens) * double(in) * double(out));
}
BENCHMARK(BM_linear_8da4w_llama7b)->Apply(llama7b_linear_args)->UseRealTime()->Unit(benchmark::kMillisecond);

// QAT: fake-quantizing a TinyLlama MLP projection's weight each forward, 8da4w (int4 symmetric, group 32)
// and int4wo (asymmetric, group 128), f32 or bf16. Bytes: the weight read, the weight and its mask written.
void BM_fake_quantize_weight(benchmark::State& s) {
  const DType dt = s.range(1) == 16 ? DType::bf16 : DType::f32;
  const quant::LinearScheme scheme = s.range(0) == 0 ? quant::LinearScheme{quant::Int8DynActInt4Weight{}}
                                                     : quant::LinearScheme{quant::Int4WeightOnly{}};
  Tensor w = uniform({kMlp, kHidden}, 40, dt, -0.05, 0.05);
  const numerics::FakeQuantSpec spec = quant::weight_spec(scheme);
  for (auto _ : s) benchmark::DoNotOptimize(quant::fake_quantize(w, spec));
  bytes_rate(s, double(w.numel()) * (2.0 * double(dtype_size(dt)) + 1.0));
}
BENCHMARK(BM_fake_quantize_weight)
    ->ArgsProduct({{0, 1}, {32, 16}})
    ->ArgNames({"int4wo", "weight_bits"})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// NF4: quantizing and dequantizing a TinyLlama MLP projection (kMlp x kHidden) of f32 or bf16 weights.
// Bytes: the dense weight once, plus the stored parts (4.127 bits per weight).
double nf4_bytes(int64_t n, DType dt) { return double(n) * (double(dtype_size(dt)) + 0.5 + 1.0 / 64); }

void BM_nf4_quantize(benchmark::State& s) {
  const DType dt = s.range(0) == 16 ? DType::bf16 : DType::f32;
  const int64_t n = kMlp * kHidden;
  Tensor w = uniform({n}, 38, dt, -0.05, 0.05);
  if (!runs(s, [&] { quant::NF4Tensor::quantize(w); })) return;
  for (auto _ : s) benchmark::DoNotOptimize(quant::NF4Tensor::quantize(w));
  bytes_rate(s, nf4_bytes(n, dt));
}
BENCHMARK(BM_nf4_quantize)->Arg(32)->Arg(16)->ArgName("weight_bits")->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_nf4_dequantize(benchmark::State& s) {
  const DType dt = s.range(0) == 16 ? DType::bf16 : DType::f32;
  const int64_t n = kMlp * kHidden;
  const quant::NF4Tensor q = quant::NF4Tensor::quantize(uniform({n}, 39, dt, -0.05, 0.05));
  Tensor out = Tensor::empty({n}, dt);
  for (auto _ : s) q.dequantize_range(0, out);
  bytes_rate(s, nf4_bytes(n, dt));
}
BENCHMARK(BM_nf4_dequantize)->Arg(32)->Arg(16)->ArgName("weight_bits")->UseRealTime()->Unit(benchmark::kMillisecond);

// linear_nf4 forward + grad_x, against BM_linear_forward / the dense forward + grad_x on the same shape
// (no weight gradient on either side: a frozen QLoRA base).
void BM_linear_nf4_forward(benchmark::State& s) {
  NoGradGuard no_grad;
  Tensor x = uniform({kTokens, kHidden}, 40);
  const quant::NF4Tensor w = quant::NF4Tensor::quantize(uniform({kMlp, kHidden}, 41, DType::f32, -0.02, 0.02));
  for (auto _ : s) benchmark::DoNotOptimize(quant::linear_nf4(x, w));
  flop_rate(s, 2.0 * kTokens * kHidden * kMlp);
}
BENCHMARK(BM_linear_nf4_forward)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_linear_nf4_forward_backward(benchmark::State& s) {
  Tensor x = uniform({kTokens, kHidden}, 42).requires_grad_();
  const quant::NF4Tensor w = quant::NF4Tensor::quantize(uniform({kMlp, kHidden}, 43, DType::f32, -0.02, 0.02));
  Tensor gy = uniform({kTokens, kMlp}, 44);
  for (auto _ : s) {
    x.zero_grad();
    quant::linear_nf4(x, w).backward(gy);
    benchmark::DoNotOptimize(x.grad());
  }
  flop_rate(s, 4.0 * kTokens * kHidden * kMlp);  // forward + grad_x
}
BENCHMARK(BM_linear_nf4_forward_backward)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_linear_frozen_forward_backward(benchmark::State& s) {
  Tensor x = uniform({kTokens, kHidden}, 42).requires_grad_();
  Tensor w = uniform({kMlp, kHidden}, 43, DType::f32, -0.02, 0.02);
  Tensor gy = uniform({kTokens, kMlp}, 44);
  for (auto _ : s) {
    x.zero_grad();
    ops::linear(x, w).backward(gy);
    benchmark::DoNotOptimize(x.grad());
  }
  flop_rate(s, 4.0 * kTokens * kHidden * kMlp);  // forward + grad_x
}
BENCHMARK(BM_linear_frozen_forward_backward)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
