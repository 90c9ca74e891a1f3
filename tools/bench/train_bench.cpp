#include "tools/bench/train_bench.h"

#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <random>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "engine/allocator.h"
#include "engine/backend.h"
#include "engine/tensor.h"
#include "models/llama.h"
#include "models/lora.h"
#include "models/quantize_model.h"
#include "optim/adamw.h"
#include "quant/float8.h"
#include "quant/frozen_nf4_linear.h"
#include "quant/qat.h"
#include "tools/bench/bench_clock.h"

namespace qtune::bench {
namespace {

constexpr double kGiga = 1e9;
constexpr double kMiB = 1024.0 * 1024.0;

// A rate or duration twice: by wall clock, and by process CPU seconds per worker thread. The CPU figure
// ignores time slices other processes took, so with one thread (OMP_NUM_THREADS=1) it is the
// uncontended figure even on a busy machine; with more threads, time spent waiting at a barrier counts.
struct Timed {
  double wall = 0, cpu = 0;
};

// The H100/H200 SXM dense bf16 tensor-core rate, the reference MFU of GPU runs.
constexpr double kHopperBf16Tflops = 790.0;

// Runs f once on `device` and returns its wall and per-thread CPU seconds; a GPU is waited for, so the
// time is that of the work f queued.
template <class F>
Timed measure(Device device, F&& f) {
  const double cpu0 = process_cpu_seconds();
  const auto t0 = Clock::now();
  f();
  backend_for(device).synchronize();
  return {seconds_since(t0), (process_cpu_seconds() - cpu0) / worker_threads()};
}

// GFLOP/s of C[M,N] = A[M,K] @ B[N,K]^T in `dtype` through backend_for(device).gemm, the call a linear layer's
// forward makes: by wall clock the best run, the one least disturbed by other processes; by CPU time the mean.
// Repeats until ~0.5 s of timed work (at least 5 runs) so small shapes are not one sample.
Timed time_gemm(int64_t m, int64_t n, int64_t k, DType dtype, Device device) {
  Backend& be = backend_for(device);
  const Tensor a = Tensor::empty({1, m, k}, dtype, device), b = Tensor::empty({1, n, k}, dtype, device);
  const Tensor c = Tensor::empty({1, m, n}, dtype, device);
  be.fill_uniform(a, 1, 0, -1.0, 1.0);
  be.fill_uniform(b, 2, 0, -1.0, 1.0);
  measure(device, [&] { be.gemm(a, false, b, true, c, 1.0, 0.0); });  // warm-up: page faults, library dispatch
  // The CPU figure is the mean over all runs, not the best run's: the process clock counts a worker thread's
  // time only when the kernel next accounts for it, so a run of a millisecond or two can show one thread's
  // time only, and the smallest of many such readings doubled the rate of a two-thread GEMM.
  double best_wall = 1e30, total = 0, total_cpu = 0;
  int runs = 0;
  for (; runs < 100 && (runs < 5 || total < 0.5); ++runs) {
    const Timed t = measure(device, [&] { be.gemm(a, false, b, true, c, 1.0, 0.0); });
    best_wall = std::min(best_wall, t.wall);
    total += t.wall;
    total_cpu += t.cpu;
  }
  const double gflop = 2.0 * double(m) * double(n) * double(k) / kGiga;
  return {gflop / best_wall, gflop * runs / total_cpu};
}

struct Phase {
  const char* name;
  std::vector<double> wall, cpu;  // seconds, one per timed step
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double max_rss_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return double(usage.ru_maxrss) * 1024.0 / kMiB;  // ru_maxrss is in KiB on Linux
}

models::LlamaConfig config_of(const TrainBenchOptions& o) {
  models::LlamaConfig c;
  c.vocab_size = o.vocab;
  c.hidden_size = o.hidden;
  c.intermediate_size = o.ffn;
  c.num_hidden_layers = o.layers;
  c.num_attention_heads = o.heads;
  c.num_key_value_heads = o.kv_heads > 0 ? o.kv_heads : o.heads;
  c.max_position_embeddings = std::max<int64_t>(o.seq, 1);
  return c;
}

// Random ids in [0, vocab), [batch, seq] i64: the step's cost does not depend on the token values.
Tensor random_tokens(int64_t batch, int64_t seq, int64_t vocab, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::uniform_int_distribution<int64_t> dist(0, vocab - 1);
  std::vector<int64_t> ids(static_cast<size_t>(batch * seq));
  for (int64_t& id : ids) id = dist(gen);
  return Tensor::from_vector(ids, {batch, seq});
}

quant::LinearScheme qat_scheme(const TrainBenchOptions& o) { return quant::parse_linear_scheme(o.qat, o.qat_group); }

void print_header(const TrainBenchOptions& o, const models::LlamaConfig& config, const TrainFlops& flops) {
  const char* omp_env = std::getenv("OMP_NUM_THREADS");
  const char* wait_env = std::getenv("OMP_WAIT_POLICY");
  std::printf(
      "qtune train benchmark: Llama hidden %lld, %lld layers, %lld/%lld heads (head dim %lld), ffn %lld, "
      "vocab %lld, %s\n",
      (long long)o.hidden, (long long)o.layers, (long long)o.heads, (long long)config.num_key_value_heads,
      (long long)config.resolved_head_dim(), (long long)o.ffn, (long long)o.vocab, o.dtype.c_str());
  std::printf(
      "batch %lld x seq %lld = %lld tokens/step; %d timed steps after %d warm-up; activation checkpointing "
      "%s; AdamW\n",
      (long long)o.batch, (long long)o.seq, (long long)(o.batch * o.seq), o.steps, o.warmup,
      o.activation_checkpointing ? "on" : "off");
  if (!o.qat.empty()) {
    std::printf("QAT: linears (lm_head excluded) fake-quantized with %s, %lld weights per scale\n", o.qat.c_str(),
                (long long)quant::group_size_of(qat_scheme(o)));
  }
  if (!o.fp8.empty()) std::printf("float8: linears converted to the %s recipe\n", o.fp8.c_str());
  if (!o.adapters.empty()) {
    std::printf("%s: rank-%lld adapters (alpha 16) on q/k/v/o/gate/up/down of every layer, %.2f M trainable; %s\n",
                o.adapters == "qlora" ? "QLoRA" : "LoRA", (long long)o.lora_rank, flops.adapter_params / 1e6,
                o.adapters == "qlora" ? "the projections stored in NF4 (double quantization), the rest frozen"
                                      : "everything else frozen");
  }
  if (o.f32_masters) std::printf("mixed precision: AdamW updates f32 masters of the bf16 weights\n");
  std::printf("device: %s%s\n", o.device.c_str(), o.tf32 ? " (f32 GEMMs on TF32 inputs)" : "");
  std::printf("%s GEMMs: %s\n", o.dtype.c_str(),
              backend_for(parse_device(o.device)).gemm_path(dtype_from_name(o.dtype)).c_str());
  std::printf("threads: %d (OMP_NUM_THREADS=%s, OMP_WAIT_POLICY=%s)\n", worker_threads(), omp_env ? omp_env : "(unset)",
              wait_env ? wait_env : "(unset)");
  const double embed = double(o.vocab) * double(o.hidden);
  std::printf("parameters: %.2f M (linear weights incl. lm_head %.2f M, embedding %.2f M, norms %.3f M)\n",
              (flops.linear_params + embed + double(2 * o.layers + 1) * double(o.hidden)) / 1e6,
              flops.linear_params / 1e6, embed / 1e6, double(2 * o.layers + 1) * double(o.hidden) / 1e6);
  char matmul[96];
  if (flops.adapter_params > 0)
    std::snprintf(matmul, sizeof matmul, "(4 x %.2f M + 6 x %.2f M adapters)", flops.linear_params / 1e6,
                  flops.adapter_params / 1e6);
  else
    std::snprintf(matmul, sizeof matmul, "6 x %.2f M", flops.linear_params / 1e6);
  std::printf(
      "model FLOPs/step: %.1f G = matmul %s x %lld tokens (%.1f G) + attention 12 x %lld layers x "
      "%lld^2/2 x %lld x %lld seqs (%.1f G)\n\n",
      flops.total() / kGiga, matmul, (long long)(o.batch * o.seq), flops.matmul / kGiga, (long long)o.layers,
      (long long)o.seq, (long long)(o.heads * config.resolved_head_dim()), (long long)o.batch, flops.attention / kGiga);
}

// The GEMM shapes of this model's linears at this step's token count; returns the best rate among them
// as the machine's peak (by wall clock and by CPU time).
Timed measure_gemm_peak(const TrainBenchOptions& o, DType dtype, Device device) {
  const int64_t tokens = o.batch * o.seq, c = o.hidden;
  const int64_t kv = (o.kv_heads > 0 ? o.kv_heads : o.heads) * (o.hidden / o.heads);
  struct Shape {
    const char* what;
    int64_t m, n, k;
  };
  std::vector<Shape> shapes = {{"q/o proj", tokens, c, c},
                               {"gate/up proj", tokens, o.ffn, c},
                               {"down proj", tokens, c, o.ffn},
                               {"lm head", tokens, o.vocab, c}};
  if (kv != c) shapes.insert(shapes.begin() + 1, Shape{"k/v proj", tokens, kv, c});
  std::printf(
      "measured GEMM peak: %s C[M,N] = A[M,K] @ B[N,K]^T through backend_for(%s).gemm: best run by wall clock, mean by "
      "CPU time\n\n",
      std::string(dtype_name(dtype)).c_str(), device.str().c_str());
  std::printf("| GEMM | M x N x K | GFLOP/s | GFLOP/s by CPU time |\n|---|---|---|---|\n");
  Timed peak;
  const char* peak_what = "";
  for (const Shape& s : shapes) {
    const Timed rate = time_gemm(s.m, s.n, s.k, dtype, device);
    std::printf("| %s | %lldx%lldx%lld | %.1f | %.1f |\n", s.what, (long long)s.m, (long long)s.n, (long long)s.k,
                rate.wall, rate.cpu);
    if (rate.wall > peak.wall) peak_what = s.what;
    peak = {std::max(peak.wall, rate.wall), std::max(peak.cpu, rate.cpu)};
    std::fflush(stdout);
  }
  std::printf("\nGEMM peak = the best of these: %.1f GFLOP/s (%s); by CPU time %.1f GFLOP/s\n\n", peak.wall, peak_what,
              peak.cpu);
  return peak;
}

}  // namespace

TrainFlops train_step_flops(const models::LlamaConfig& config, int64_t batch, int64_t seq, int64_t lora_rank) {
  const double c = double(config.hidden_size), f = double(config.intermediate_size);
  const double hd = double(config.resolved_head_dim());
  const double q = double(config.num_attention_heads) * hd, kv = double(config.num_key_value_heads) * hd;
  const double per_layer = c * q + 2 * c * kv + q * c + 3 * c * f;
  TrainFlops out;
  out.linear_params = double(config.num_hidden_layers) * per_layer + double(config.vocab_size) * c;
  // An adapter pair on a [out, in] projection holds r * (in + out) weights.
  const double r = double(lora_rank);
  out.adapter_params = double(config.num_hidden_layers) * r * ((c + q) + 2 * (c + kv) + (q + c) + 3 * (c + f));
  const double tokens = double(batch) * double(seq), t = double(seq);
  out.matmul =
      lora_rank > 0 ? (4.0 * out.linear_params + 6.0 * out.adapter_params) * tokens : 6.0 * out.linear_params * tokens;
  out.attention = 12.0 * double(config.num_hidden_layers) * (t * t / 2.0) * q * double(batch);
  out.forward = 2.0 * (out.linear_params + out.adapter_params) * tokens + out.attention / 3.0;
  return out;
}

int run_train_bench(const TrainBenchOptions& o) {
  models::LlamaConfig config = config_of(o);
  DType dtype;
  Device device;
  try {
    QTUNE_CHECK(o.steps >= 1 && o.warmup >= 0, "train bench: steps must be >= 1 and warmup >= 0 (got ", o.steps, ", ",
                o.warmup, ")");
    QTUNE_CHECK(o.batch >= 1 && o.seq >= 1, "train bench: batch and seq must be >= 1 (got ", o.batch, ", ", o.seq, ")");
    dtype = dtype_from_name(o.dtype);
    QTUNE_CHECK(dtype == DType::f32 || dtype == DType::bf16, "train bench: dtype must be f32 or bf16, got ", o.dtype);
    config.validate();
    device = parse_device(o.device);
    QTUNE_CHECK(device.is_cpu() || device.index < cuda_device_count(), "train bench: device ", o.device,
                ": no such CUDA device here (", cuda_device_count(), " found)");
    QTUNE_CHECK(o.qat.empty() || o.fp8.empty(), "train bench: --qat and --fp8 do not combine");
    QTUNE_CHECK(o.adapters.empty() || o.adapters == "lora" || o.adapters == "qlora",
                "train bench: --adapters must be lora or qlora, got ", o.adapters);
    QTUNE_CHECK(o.adapters.empty() || (o.qat.empty() && o.fp8.empty()),
                "train bench: --adapters does not combine with --qat or --fp8 here");
    QTUNE_CHECK(o.lora_rank >= 1, "train bench: --lora-rank must be >= 1, got ", o.lora_rank);
    QTUNE_CHECK(!o.f32_masters || dtype == DType::bf16, "train bench: --f32-masters goes with --dtype bf16");
    if (!o.qat.empty()) qat_scheme(o);
    if (!o.fp8.empty()) quant::parse_float8_recipe(o.fp8);
    QTUNE_CHECK(!o.tf32 || (device.is_cuda() && dtype == DType::f32),
                "train bench: --tf32 applies to --dtype f32 on --device cuda (got --dtype ", o.dtype, " on ", o.device,
                ")");
    backend_for(device).set_tf32(o.tf32);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  const TrainFlops flops = train_step_flops(config, o.batch, o.seq, o.adapters.empty() ? 0 : o.lora_rank);
  print_header(o, config, flops);
  // The peak of the model's own dtype, on the path its GEMMs take (bf16 natively or widened, as the header says).
  const Timed peak = measure_gemm_peak(o, dtype, device);

  models::Llama model(
      config, {.dtype = dtype, .device = device, .seed = 0, .activation_checkpointing = o.activation_checkpointing});
  if (!o.qat.empty()) quant::quantize_(model, {qat_scheme(o), quant::QATStep::Prepare});
  if (!o.fp8.empty()) {
    quant::convert_to_float8(model, quant::Float8LinearConfig::from_recipe(quant::parse_float8_recipe(o.fp8)));
  }
  if (!o.adapters.empty()) {
    // Every target LoRA takes but the output head.
    std::vector<std::string> projections;
    for (const std::string& name : models::lora_target_names())
      if (name != "lm_head") projections.push_back(name);
    const models::LoraConfig lora{.rank = o.lora_rank, .alpha = 16, .targets = projections};
    if (o.adapters == "qlora") {
      const quant::ModelQuantization base = models::qlora_base(lora);
      quant::convert_to_nf4(model, [base](const Module&, std::string_view fqn) {
        return models::quantized_part(base, fqn) == models::QuantizedPart::linear;
      });
    }
    models::apply_lora(model, lora);
    // The FLOP count's adapter size must be the model's.
    int64_t adapter_weights = 0;
    for (const Tensor& t : models::lora_parameters(model)) adapter_weights += t.numel();
    QTUNE_CHECK(double(adapter_weights) == flops.adapter_params, "train bench: the adapters hold ", adapter_weights,
                " weights, the FLOP count assumed ", flops.adapter_params);
  }
  optim::AdamW opt(model.trainable_parameters(), {.lr = 1e-4});
  if (o.f32_masters) opt.keep_f32_masters();
  const Tensor tokens = random_tokens(o.batch, o.seq, o.vocab, 1).to(device);
  const Tensor targets = random_tokens(o.batch, o.seq, o.vocab, 2);

  reset_peak_memory(device);
  std::vector<Phase> phases = {
      {"forward (incl. loss)", {}, {}}, {"backward", {}, {}}, {"AdamW step + zero_grad", {}, {}}};
  std::vector<double> steps, steps_cpu;
  for (int i = 0; i < o.warmup + o.steps; ++i) {
    Tensor loss;
    const Timed t[3] = {measure(device, [&] { loss = model.loss(tokens, targets); }),
                        measure(device, [&] { loss.backward(); }), measure(device, [&] {
                          opt.step();
                          opt.zero_grad();
                        })};
    const double step = t[0].wall + t[1].wall + t[2].wall;
    const bool timed = i >= o.warmup;
    std::printf("%s step %d: %.0f ms (forward %.0f, backward %.0f, optimizer %.0f), loss %.4f\n",
                timed ? "timed" : "warm-up", timed ? i - o.warmup + 1 : i + 1, 1e3 * step, 1e3 * t[0].wall,
                1e3 * t[1].wall, 1e3 * t[2].wall, loss.item());
    std::fflush(stdout);
    if (!timed) continue;
    for (int p = 0; p < 3; ++p) {
      phases[p].wall.push_back(t[p].wall);
      phases[p].cpu.push_back(t[p].cpu);
    }
    steps.push_back(step);
    steps_cpu.push_back(t[0].cpu + t[1].cpu + t[2].cpu);
  }

  const double phase_flops[3] = {flops.forward, flops.total() - flops.forward, 0.0};
  const double step_med = median(steps), step_min = *std::min_element(steps.begin(), steps.end());
  const double step_cpu = median(steps_cpu);
  std::printf(
      "\n| phase | median ms | best ms | share of step | model GFLOP/s | CPU ms per thread |\n"
      "|---|---|---|---|---|---|\n");
  for (int p = 0; p < 3; ++p) {
    const double med = median(phases[p].wall);
    char rate[32] = "-";
    if (phase_flops[p] > 0) std::snprintf(rate, sizeof rate, "%.1f", phase_flops[p] / med / kGiga);
    std::printf("| %s | %.1f | %.1f | %.1f%% | %s | %.1f |\n", phases[p].name, 1e3 * med,
                1e3 * *std::min_element(phases[p].wall.begin(), phases[p].wall.end()), 100.0 * med / step_med, rate,
                1e3 * median(phases[p].cpu));
  }
  std::printf("| step | %.1f | %.1f | 100%% | %.1f | %.1f |\n\n", 1e3 * step_med, 1e3 * step_min,
              flops.total() / step_med / kGiga, 1e3 * step_cpu);

  const MemoryStats mem = memory_stats(device);
  const double tokens_per_step = double(o.batch * o.seq);
  std::printf("| step time | tokens/s | model GFLOP/s | GEMM peak GFLOP/s | MFU |\n|---|---|---|---|---|\n");
  const struct {
    const char* what;
    double seconds, peak;
  } rows[] = {
      {"best", step_min, peak.wall}, {"median", step_med, peak.wall}, {"median by CPU time", step_cpu, peak.cpu}};
  for (const auto& r : rows)
    std::printf("| %s | %.0f | %.1f | %.1f | **%.1f%%** |\n", r.what, tokens_per_step / r.seconds,
                flops.total() / r.seconds / kGiga, r.peak, 100.0 * flops.total() / r.seconds / kGiga / r.peak);
  if (device.is_cuda() && dtype == DType::bf16) {
    std::printf("| median, against %.0f TFLOP/s (H100/H200 dense bf16) | %.0f | %.1f | %.1f | **%.2f%%** |\n",
                kHopperBf16Tflops, tokens_per_step / step_med, flops.total() / step_med / kGiga,
                kHopperBf16Tflops * 1e3, 100.0 * flops.total() / step_med / kGiga / (kHopperBf16Tflops * 1e3));
  }
  std::printf(
      "\npeak memory: %.0f MiB in tensors, %.0f MiB reserved by the %s allocator (its cache included), "
      "%.0f MiB max host RSS\n",
      double(mem.peak_allocated) / kMiB, double(mem.peak_reserved) / kMiB, device.str().c_str(), max_rss_mib());
  std::printf(
      "\n(MFU = model GFLOP/s / GEMM peak. On a machine shared with other work the best step and the best\n"
      "GEMM run are the least disturbed ones; the median shows the load. By CPU time = process CPU seconds\n"
      "per thread: exact for OMP_NUM_THREADS=1 whatever the load; with more threads, barrier waits count.\n"
      "Memory: from the first warm-up step on.)\n");
  return 0;
}

}  // namespace qtune::bench
