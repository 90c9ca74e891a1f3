// `qtune bench ...`: the kernel microbenchmarks. The implementations live in tools/bench/ and are
// linked in when that directory is part of the build (QTUNE_HAVE_BENCH); without them the group
// exists but says so, instead of the whole command being unknown.
#include <fmt/core.h>

#include "qtune/commands.h"

#ifdef QTUNE_HAVE_BENCH
#include <array>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/gemm_bench.h"
#include "bench/load_bench.h"
#include "bench/memory_bench.h"
#include "bench/train_bench.h"
#endif

namespace qtune::cli {
namespace {

#ifdef QTUNE_HAVE_BENCH
// "MxNxK" -> {M, N, K}, all positive.
std::array<int64_t, 3> parse_shape(const std::string& text) {
  std::array<int64_t, 3> dims{};
  size_t pos = 0;
  for (int i = 0; i < 3; ++i) {
    const size_t end = text.find('x', pos);
    const bool last = i == 2;
    if ((end == std::string::npos) != last) throw CLI::ValidationError("--shape", "expected MxNxK, got '" + text + "'");
    const std::string part = text.substr(pos, last ? std::string::npos : end - pos);
    size_t used = 0;
    int64_t value = 0;
    try {
      value = std::stoll(part, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != part.size() || part.empty() || value <= 0)
      throw CLI::ValidationError("--shape", "expected positive MxNxK, got '" + text + "'");
    dims[i] = value;
    pos = end + 1;
  }
  return dims;
}

void add_gemm(CLI::App& bench, int& status) {
  auto* cmd = bench.add_subcommand("gemm", "Time qtune's CPU GEMM beside the GEMM libraries called directly");
  struct Flags {
    std::vector<std::string> shapes;
    qtune::bench::GemmBenchOptions options;
  };
  auto flags = std::make_shared<Flags>();
  cmd->add_option("--shape", flags->shapes, "MxNxK, C[M,N] = A[M,K] @ B[N,K]^T; repeatable (default: Llama-7B shapes)");
  cmd->add_option("--repeats", flags->options.repeats, "Timed runs per library and shape")
      ->check(integer_in(1, kMaxCount))
      ->capture_default_str();
  cmd->add_option("--warmup", flags->options.warmup, "Untimed runs first")
      ->check(integer_in(0, kMaxCount))
      ->capture_default_str();
  cmd->add_option("--dtype", flags->options.dtype, "qtune's operand dtype")
      ->check(CLI::IsMember({"f32", "f64", "bf16", "f16"}))
      ->capture_default_str();
  cmd->callback([flags, &status] {
    for (const auto& s : flags->shapes) flags->options.shapes.push_back(parse_shape(s));
    status = qtune::bench::run_gemm_bench(flags->options);
  });
}

void add_train(CLI::App& bench, int& status) {
  auto* cmd = bench.add_subcommand(
      "train", "Time f32/bf16 training steps (forward, backward, AdamW) of a Llama; tokens/s, MFU, memory");
  auto options = std::make_shared<qtune::bench::TrainBenchOptions>();
  cmd->add_option("--steps", options->steps, "Timed steps")->check(integer_in(1, kMaxCount))->capture_default_str();
  cmd->add_option("--warmup", options->warmup, "Untimed steps first")
      ->check(integer_in(0, kMaxCount))
      ->capture_default_str();
  cmd->add_option("--batch", options->batch, "Sequences per step")
      ->check(integer_in(1, kMaxCount))
      ->capture_default_str();
  cmd->add_option("--seq", options->seq, "Tokens per sequence")->check(integer_in(1, kMaxCount))->capture_default_str();
  cmd->add_option("--hidden", options->hidden, "Hidden size")->check(integer_in(1, kMaxCount))->capture_default_str();
  cmd->add_option("--layers", options->layers, "Decoder layers")
      ->check(integer_in(1, kMaxCount))
      ->capture_default_str();
  cmd->add_option("--heads", options->heads, "Attention heads")->check(integer_in(1, kMaxCount))->capture_default_str();
  cmd->add_option("--kv-heads", options->kv_heads, "Key/value heads (grouped-query attention; 0: as many as --heads)")
      ->check(integer_in(0, kMaxCount))
      ->capture_default_str();
  cmd->add_option("--ffn", options->ffn, "MLP intermediate size")
      ->check(integer_in(1, kMaxCount))
      ->capture_default_str();
  cmd->add_option("--vocab", options->vocab, "Vocabulary size")->check(integer_in(1, kMaxCount))->capture_default_str();
  cmd->add_option("--dtype", options->dtype, "Parameter and activation dtype")
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->capture_default_str();
  add_device_option(cmd, options->device);
  cmd->add_flag("--activation-checkpointing", options->activation_checkpointing,
                "Recompute each decoder layer's forward in backward");
  cmd->add_option("--qat", options->qat, "Train through QAT fake quantization: 8da4w, int4wo, q4_0 or q8_0");
  cmd->add_option("--qat-group", options->qat_group, "Weights per scale for --qat 8da4w/int4wo (0: the default)")
      ->check(integer_in(0, kMaxCount));
  cmd->add_option("--fp8", options->fp8, "Train through float8 GEMMs: tensorwise, rowwise or rowwise_with_gw_hp");
  cmd->add_flag("--tf32", options->tf32, "f32 GEMMs on TF32 inputs (tensor cores; --device cuda, --dtype f32)");
  cmd->add_option("--adapters", options->adapters,
                  "Train only LoRA adapters on all seven projections: lora (frozen base) or qlora (NF4 base)")
      ->check(CLI::IsMember({"lora", "qlora"}));
  cmd->add_flag("--f32-masters", options->f32_masters,
                "With --dtype bf16: AdamW updates f32 master weights (mixed precision, model.master_dtype=f32)");
  cmd->add_option("--lora-rank", options->lora_rank, "Adapter rank with --adapters")
      ->check(integer_in(1, kMaxCount))
      ->capture_default_str();
  cmd->callback([options, &status] { status = qtune::bench::run_train_bench(*options); });
}

void add_load(CLI::App& bench, int& status) {
  auto* cmd = bench.add_subcommand(
      "load",
      "Load time and peak memory of loading a generated Llama-3.2-1B bf16 checkpoint as bf16, NF4, 8da4w, int4wo");
  auto options = std::make_shared<qtune::bench::LoadBenchOptions>();
  cmd->add_option("--dir", options->dir, "Checkpoint directory, written once and reused (default: under the temp dir)");
  cmd->add_option(
      "--target", options->targets,
      "bf16, or a weight scheme (nf4, 8da4w, int4wo, q4_0, q8_0); repeatable (default: bf16 nf4 8da4w int4wo; "
      "with --nproc or --device cuda: bf16 nf4)");
  cmd->add_flag("--small", options->small, "A tiny model instead of Llama-3.2-1B (tests)");
  cmd->add_option("--nproc", options->nproc,
                  "N MPI ranks (mpirun) each load their FSDP shard, reading only its pieces (targets bf16, nf4)")
      ->check(integer_in(1, 1024));
  add_device_option(cmd, options->device);
  // The child process each load runs in.
  cmd->add_option("--measure", options->measure)->group("");
  cmd->callback([options, &status] { status = qtune::bench::run_load_bench(*options); });
}

void add_memory(CLI::App& bench, int& status) {
  auto* cmd = bench.add_subcommand(
      "memory", "Peak memory and time of one training step: full, LoRA, QLoRA, QAT, QAT+LoRA, LoRA on a float8 base");
  auto options = std::make_shared<qtune::bench::MemoryBenchOptions>();
  cmd->add_flag("--small", options->small, "A tiny model (a quick check that the table prints)");
  cmd->add_option("--steps", options->steps, "Timed steps after one warm-up")
      ->check(integer_in(1, kMaxCount))
      ->capture_default_str();
  cmd->add_option("--vocab", options->vocab, "Vocabulary size (0: the model's own)")
      ->check(integer_in(0, kMaxCount))
      ->capture_default_str();
  cmd->add_option("--layers", options->layers, "Decoder layers (0: the model's own)")
      ->check(integer_in(0, kMaxCount))
      ->capture_default_str();
  cmd->add_option("--dtype", options->dtypes, "Model dtypes, repeatable")
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->capture_default_str();
  cmd->callback([options, &status] { status = qtune::bench::run_memory_bench(*options); });
}
#endif

}  // namespace

void add_bench_command(CLI::App& app, int& status) {
#ifdef QTUNE_HAVE_BENCH
  CLI::App* bench = add_command_group(app, "bench", "Kernel and training benchmarks", status);
  add_gemm(*bench, status);
  add_train(*bench, status);
  add_load(*bench, status);
  add_memory(*bench, status);
#else
  auto* bench = app.add_subcommand("bench", "Kernel and training benchmarks");
  bench->callback([&status] {
    fmt::print(stderr, "qtune: this build has no benchmarks (tools/bench/ was not part of it)\n");
    status = 1;
  });
#endif
}

}  // namespace qtune::cli
