#include "tools/bench/memory_bench.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "engine/allocator.h"
#include "engine/check.h"
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

constexpr double kMiB = 1024.0 * 1024.0;

struct Shape {
  int64_t hidden, layers, heads, ffn, vocab, batch, seq;
};

// Weights dominate the default: 374 M parameters against 128 tokens of activations. The decoder linears
// (303 M) outweigh the embedding and head (33 M each, 18% of the weights) about as in Llama-3.2-1B (21%).
// With fewer layers the full-precision embedding and head (docs/numerics.md §4) set the QLoRA/LoRA ratio instead.
constexpr Shape kDefault{1024, 24, 16, 2816, 32000, 1, 128};
constexpr Shape kSmall{64, 2, 4, 128, 256, 1, 16};

// LoRA adapters on every decoder projection.
const std::vector<std::string> kProjections = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                               "gate_proj", "up_proj", "down_proj"};

// The frozen base of QLoRA and of the float8 LoRA: the modules a whole-model quantization stores.
bool is_decoder_projection(const Module&, std::string_view fqn) {
  return models::quantized_part(quant::ModelQuantization{quant::NF4{}}, fqn) == models::QuantizedPart::linear;
}

// The six ways to train: how to prepare the model, and whether LoRA goes on top (then only the adapters
// train; otherwise every parameter does).
struct Variant {
  const char* name;
  std::function<void(models::Llama&)> prepare;
  bool lora;
};

const std::vector<Variant>& variants() {
  static const std::vector<Variant> all = {
      {"full", [](models::Llama&) {}, false},
      {"LoRA", [](models::Llama&) {}, true},
      {"QLoRA (NF4)", [](models::Llama& m) { quant::convert_to_nf4(m, is_decoder_projection); }, true},
      {"QAT 8da4w", [](models::Llama& m) { quant::quantize_(m, {quant::Int8DynActInt4Weight{32}}); }, false},
      {"QAT+LoRA", [](models::Llama& m) { quant::quantize_(m, {quant::Int8DynActInt4Weight{32}}); }, true},
      {"LoRA, float8 frozen base",
       [](models::Llama& m) { quant::convert_to_float8_frozen(m, {}, is_decoder_projection); }, true},
  };
  return all;
}

// What a child process sends back through its pipe (plain bytes: both sides are this binary).
struct Measured {
  bool ok = false;
  double peak_tensor_bytes = 0, peak_rss_bytes = 0, model_bytes = 0, trainable = 0, step_seconds = 0;
  bool rss_since_setup = false;  // VmHWM was reset after setup (else it includes building the model)
  char error[512] = {};
};

// VmHWM of this process in bytes; 0 when /proc is not there.
double peak_rss_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) * 1024.0;  // the line is in kB
  return 0;
}

// Writing 5 to clear_refs resets VmHWM to the current RSS (Linux 4.0+).
bool reset_peak_rss() {
  std::ofstream clear("/proc/self/clear_refs");
  clear << "5";
  clear.flush();
  return static_cast<bool>(clear);
}

Tensor random_tokens(const Shape& s, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::uniform_int_distribution<int64_t> dist(0, s.vocab - 1);
  std::vector<int64_t> ids(static_cast<size_t>(s.batch * s.seq));
  for (int64_t& id : ids) id = dist(gen);
  return Tensor::from_vector(ids, {s.batch, s.seq});
}

models::LlamaConfig config_of(const Shape& s) {
  models::LlamaConfig c;
  c.vocab_size = s.vocab;
  c.hidden_size = s.hidden;
  c.intermediate_size = s.ffn;
  c.num_hidden_layers = s.layers;
  c.num_attention_heads = s.heads;
  c.num_key_value_heads = s.heads;
  c.max_position_embeddings = s.seq;
  return c;
}

// Builds and prepares the model, then measures from a clean start: peaks reset, the allocator's cache of
// the setup's freed blocks (a dense weight before NF4, say) handed back.
Measured measure_variant(const Variant& variant, const Shape& shape, DType dtype, int steps) {
  models::Llama model(config_of(shape), {.dtype = dtype, .seed = 0});
  variant.prepare(model);
  if (variant.lora) models::apply_lora(model, {.rank = 8, .alpha = 16, .targets = kProjections});
  const std::vector<Tensor> trainable = model.trainable_parameters();
  optim::AdamW opt(trainable, {.lr = 1e-4});
  const Tensor tokens = random_tokens(shape, 1), targets = random_tokens(shape, 2);

  Measured m;
  for (const Tensor& t : trainable) m.trainable += double(t.numel());
  allocator_for(Device::cpu()).empty_cache();
  m.model_bytes = double(memory_stats(Device::cpu()).allocated);
  reset_peak_memory(Device::cpu());
  m.rss_since_setup = reset_peak_rss();
  std::vector<double> times;
  for (int i = 0; i <= steps; ++i) {  // step 0 is the warm-up (it also creates the AdamW state)
    const auto t0 = Clock::now();
    model.loss(tokens, targets).backward();
    opt.step();
    opt.zero_grad();
    if (i > 0) times.push_back(seconds_since(t0));
  }
  std::sort(times.begin(), times.end());
  m.step_seconds = times[times.size() / 2];
  m.peak_tensor_bytes = double(memory_stats(Device::cpu()).peak_allocated);
  m.peak_rss_bytes = peak_rss_bytes();
  m.ok = true;
  return m;
}

// Runs one variant in a forked child. The parent never runs a parallel region (the OpenMP runtime does
// not survive fork in a child of a process that used it), so every child starts with a fresh one.
Measured in_child(const Variant& variant, const Shape& shape, DType dtype, int steps) {
  int fds[2];
  QTUNE_CHECK(pipe(fds) == 0, "bench memory: pipe() failed: ", std::strerror(errno));
  std::fflush(stdout);
  const pid_t pid = fork();
  QTUNE_CHECK(pid >= 0, "bench memory: fork() failed: ", std::strerror(errno));
  if (pid == 0) {
    close(fds[0]);
    Measured m;
    try {
      m = measure_variant(variant, shape, dtype, steps);
    } catch (const std::exception& e) {
      std::snprintf(m.error, sizeof m.error, "%s", e.what());
    }
    const ssize_t written = write(fds[1], &m, sizeof m);
    _exit(written == static_cast<ssize_t>(sizeof m) ? 0 : 1);
  }
  close(fds[1]);
  Measured m;
  size_t got = 0;
  while (got < sizeof m) {
    const ssize_t n = read(fds[0], reinterpret_cast<char*>(&m) + got, sizeof m - got);
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  close(fds[0]);
  int wstatus = 0;
  waitpid(pid, &wstatus, 0);
  if (got != sizeof m) {
    m = Measured{};
    std::snprintf(m.error, sizeof m.error, "the child process died (wait status %d; out of memory?)", wstatus);
  }
  return m;
}

const char* verdict(bool pass) { return pass ? "PASS" : "FAIL"; }

}  // namespace

int run_memory_bench(const MemoryBenchOptions& o) {
  std::vector<DType> dtypes;
  try {
    QTUNE_CHECK(o.steps >= 1 && o.vocab >= 0, "bench memory: steps must be >= 1 and vocab >= 0 (got ", o.steps, ", ",
                o.vocab, ")");
    for (const std::string& name : o.dtypes) {
      const DType d = dtype_from_name(name);
      QTUNE_CHECK(d == DType::f32 || d == DType::bf16, "bench memory: dtype must be f32 or bf16, got ", name);
      dtypes.push_back(d);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  Shape s = o.small ? kSmall : kDefault;
  if (o.vocab > 0) s.vocab = o.vocab;
  if (o.layers > 0) s.layers = o.layers;
  std::printf(
      "qtune memory benchmark: one training step (forward, backward, AdamW over the trainable parameters)\n"
      "Llama hidden %lld, %lld layers, %lld heads, ffn %lld, vocab %lld (untied head), batch %lld x seq %lld; "
      "LoRA rank 8 on q,k,v,o,gate,up,down;\nQLoRA: every decoder projection NF4; QAT: 8da4w group 32 "
      "(lm_head excluded); float8 base: tensorwise e4m3, decoder projections.\n"
      "Each variant in a fresh child process; memory from the warm-up step on, after setup; step time: median "
      "of %d steps.\nThe step's MiB: peak tensors minus the model tensors alive before the step (activations saved "
      "for backward, gradients, AdamW state, scratch).\n\n",
      (long long)s.hidden, (long long)s.layers, (long long)s.heads, (long long)s.ffn, (long long)s.vocab,
      (long long)s.batch, (long long)s.seq, o.steps);
  std::printf(
      "| dtype | variant | peak tensors MiB | of which the step's MiB | peak RSS MiB | model tensors MiB | trainable "
      "params | step ms |\n"
      "|---|---|---|---|---|---|---|---|\n");
  int status = 0;
  std::vector<std::string> targets;
  for (size_t d = 0; d < dtypes.size(); ++d) {
    const DType dtype = dtypes[d];
    const char* dname = o.dtypes[d].c_str();
    std::vector<Measured> rows;
    for (const Variant& v : variants()) {
      rows.push_back(in_child(v, s, dtype, o.steps));
      const Measured& m = rows.back();
      if (!m.ok) {
        std::fprintf(stderr, "bench memory: %s %s failed: %s\n", dname, v.name, m.error);
        status = 1;
        continue;
      }
      std::printf("| %s | %s | %.1f | %.1f | %.1f%s | %.1f | %.3f M | %.1f |\n", dname, v.name,
                  m.peak_tensor_bytes / kMiB, (m.peak_tensor_bytes - m.model_bytes) / kMiB, m.peak_rss_bytes / kMiB,
                  m.rss_since_setup ? "" : " (incl. setup)", m.model_bytes / kMiB, m.trainable / 1e6,
                  1e3 * m.step_seconds);
      std::fflush(stdout);
    }
    const Measured &lora = rows[1], &qlora = rows[2], &qat = rows[3], &qat_lora = rows[4];
    char line[512];
    if (lora.ok && qlora.ok) {
      std::snprintf(line, sizeof line, "%s: QLoRA peak %.1f MiB <= 0.5 x LoRA peak %.1f MiB (ratio %.3f): %s", dname,
                    qlora.peak_tensor_bytes / kMiB, lora.peak_tensor_bytes / kMiB,
                    qlora.peak_tensor_bytes / lora.peak_tensor_bytes,
                    verdict(qlora.peak_tensor_bytes <= 0.5 * lora.peak_tensor_bytes));
      targets.emplace_back(line);
    }
    if (qat.ok && qat_lora.ok) {
      std::snprintf(
          line, sizeof line,
          "%s: QAT+LoRA faster and smaller than QAT: %.2fx faster, %.0f%% less peak memory (GPU anchor: "
          "1.89x, 36%%): %s",
          dname, qat.step_seconds / qat_lora.step_seconds,
          100.0 * (1.0 - qat_lora.peak_tensor_bytes / qat.peak_tensor_bytes),
          verdict(qat_lora.step_seconds < qat.step_seconds && qat_lora.peak_tensor_bytes < qat.peak_tensor_bytes));
      targets.emplace_back(line);
    }
  }
  std::printf("\ntargets:\n");
  for (const std::string& t : targets) std::printf("  %s\n", t.c_str());
  return status;
}

}  // namespace qtune::bench
