#include "tools/bench/load_bench.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <fmt/core.h>

#include "dist/nccl_communicator.h"
#include "dist/world.h"
#include "engine/allocator.h"
#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/check.h"
#include "engine/io/atomic_file.h"
#include "engine/io/checkpoint_files.h"
#include "engine/io/safetensors_writer.h"
#include "engine/rng.h"
#include "models/hf_checkpoint.h"
#include "models/pending_linear.h"
#include "models/quantizing_loader.h"
#include "models/sharded_llama.h"
#include "models/sharded_loading.h"
#include "quant/weight_quantize.h"
#include "tools/bench/bench_clock.h"

namespace qtune::bench {
namespace {

namespace fs = std::filesystem;
constexpr double kMB = 1e6;

models::LlamaConfig bench_config(bool small) {
  models::LlamaConfig c;  // Llama-3.2-1B
  c.vocab_size = small ? 512 : 128256;
  c.hidden_size = small ? 128 : 2048;
  c.intermediate_size = small ? 256 : 8192;
  c.num_hidden_layers = small ? 2 : 16;
  c.num_attention_heads = small ? 4 : 32;
  c.num_key_value_heads = small ? 2 : 8;
  c.head_dim = c.hidden_size / c.num_attention_heads;
  c.max_position_embeddings = small ? 256 : 131072;
  c.rope_theta = 500000.0;
  c.rms_norm_eps = 1e-5;
  c.tie_word_embeddings = true;
  c.bos_token_id = 128000;
  c.eos_token_ids = {128001};
  c.torch_dtype = "bfloat16";
  return c;
}

// Every tensor of the checkpoint in HF order, from a model whose projections are storage-less slots and
// whose other parameters are allocated but never touched: the names and shapes without the memory.
std::vector<io::TensorSpec> checkpoint_specs(const models::LlamaConfig& config) {
  models::LlamaOptions options;
  options.dtype = DType::bf16;
  options.defer_projections = true;
  SkipInitGuard no_init;
  models::Llama model(config, options);
  std::vector<io::TensorSpec> specs;
  for (const auto& [fqn, module] : model.named_modules()) {
    if (const auto* pending = dynamic_cast<const models::PendingLinear*>(module))
      specs.push_back({fqn + ".weight", DType::bf16, {pending->out_features(), pending->in_features()}});
    for (const auto& [name, p] : module->named_parameters(fqn, false)) specs.push_back({name, DType::bf16, p.shape()});
  }
  return specs;
}

// A checkpoint is complete when config.json (written last) describes this config and the weights pass
// load_llama's checks.
bool checkpoint_complete(const std::string& dir, const models::LlamaConfig& config) {
  try {
    if (models::llama_config_to_json(models::load_llama_config(dir)) != models::llama_config_to_json(config))
      return false;
    std::map<std::string, Shape> expected;
    for (const io::TensorSpec& spec : checkpoint_specs(config)) expected[spec.name] = spec.shape;
    models::check_llama_tensors(io::CheckpointFiles::open(dir), expected, config);
    return true;
  } catch (const Error&) {
    return false;
  }
}

// Streams random weights tensor by tensor (N(0, 0.02), norms 1): at most one tensor is in memory.
void write_checkpoint(const std::string& dir, const models::LlamaConfig& config) {
  fs::create_directories(dir);
  fs::remove(fs::path(dir) / "config.json");
  const std::vector<io::TensorSpec> specs = checkpoint_specs(config);
  io::SafetensorsWriter out((fs::path(dir) / "model.safetensors").string(), specs);
  Generator gen(1);
  NoGradGuard no_grad;
  for (const io::TensorSpec& spec : specs) {
    const bool norm = spec.shape.size() == 1;
    out.write(norm ? Tensor::ones(spec.shape, spec.dtype)
                   : randn(spec.shape, spec.dtype, Device::cpu(), &gen, 0.0, 0.02));
  }
  out.commit();
  io::write_file_atomic((fs::path(dir) / "config.json").string(), models::llama_config_to_json(config));
}

struct Measured {
  double seconds = 0, peak_mb = 0, model_mb = 0;
  double device_peak_mb = 0;  // the GPU's peak allocation; 0 for a CPU load
};

double peak_rss_mb() {  // VmHWM of this process
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) * 1024.0 / kMB;  // kB
  return 0;
}

double model_mb(models::Llama& model) {
  double bytes = 0;
  for (const auto& [name, t] : model.named_parameters()) bytes += double(t.nbytes());
  for (const auto& [name, t] : model.named_buffers()) bytes += double(t.nbytes());
  return bytes / kMB;
}

// The peak of the GPU's allocator since the process started, read after the caller's synchronize; 0 on the
// CPU (peak_rss_mb covers it).
double device_peak_mb(Device device) {
  if (!device.is_cuda()) return 0;
  return double(memory_stats(device).peak_allocated) / kMB;
}

// The child's side: one load, its numbers on stdout.
int measure_one(const std::string& dir, const std::string& target, Device device) {
  const auto t0 = Clock::now();
  std::shared_ptr<models::Llama> model;
  if (target == "bf16") {
    model = models::load_llama(dir, {.dtype = DType::bf16, .device = device});
  } else {
    model = models::load_llama_quantized(dir, {quant::parse_weight_scheme(target)},
                                         {.dtype = DType::bf16, .device = device});
  }
  backend_for(device).synchronize();
  const double seconds = seconds_since(t0);
  fmt::print("{} {} {} {}\n", seconds, peak_rss_mb(), model_mb(*model), device_peak_mb(device));
  return 0;
}

// A rank's side under mpirun: its sharded load; rank 0 prints the slowest time, the highest peaks and the
// largest shard (with the root's whole tensors) of all ranks. GPU ranks shard over NCCL, each on its node-local
// GPU, as `qtune run --nproc N device=cuda` does; MPI reads the pieces' metadata and gathers the numbers.
int measure_sharded(const std::string& dir, const std::string& target, bool on_gpus) {
  const std::unique_ptr<dist::Communicator> comm = dist::world_communicator();
  const std::unique_ptr<dist::NcclCommunicator> nccl = on_gpus ? dist::NcclCommunicator::world(*comm) : nullptr;
  const Device device = nccl ? nccl->device() : Device::cpu();
  const auto t0 = Clock::now();
  const quant::ModelQuantization nf4{quant::NF4{}};
  const auto model =
      models::load_llama_reserved(dir, target == "nf4" ? &nf4 : nullptr, {.dtype = DType::bf16, .device = device});
  // An NF4 model is a QLoRA base: frozen, so the root keeps no trainable pieces beside its whole tensors. The
  // bf16 one is trained whole (the full recipe): the root's trainable tensors also have their pieces.
  if (target == "nf4")
    for (auto& [name, t] : model->named_parameters()) t.requires_grad_(false);
  models::ShardedLlama sharded(*model, nccl ? static_cast<dist::Communicator&>(*nccl) : *comm,
                               {.source = models::checkpoint_pieces(dir, *comm, DType::bf16)});
  backend_for(device).synchronize();
  constexpr int kNumbers = 4;
  double mine[kNumbers] = {seconds_since(t0), peak_rss_mb(), double(sharded.fsdp().held_bytes()) / kMB,
                           device_peak_mb(device)};
  const Tensor all = Tensor::empty({kNumbers * comm->size()}, DType::f64);
  comm->all_gather(dist::Buffer{mine, kNumbers, DType::f64}, dist::buffer_of(all))->wait();
  if (comm->rank() == 0) {
    const double* a = all.data<double>();
    for (int r = 1; r < comm->size(); ++r)
      for (int k = 0; k < kNumbers; ++k) mine[k] = std::max(mine[k], a[kNumbers * r + k]);
    fmt::print("{} {} {} {}\n", mine[0], mine[1], mine[2], mine[3]);
  }
  return 0;
}

// Runs `argv` (this executable again, or mpirun starting it: a fresh address space, nothing resident from the
// parent) and reads the numbers it prints.
Measured measure_in_child(std::vector<std::string> argv, const std::string& target) {
  std::vector<char*> c_argv;
  for (std::string& a : argv) c_argv.push_back(a.data());
  c_argv.push_back(nullptr);
  int fds[2];
  QTUNE_CHECK(::pipe(fds) == 0, "bench load: cannot create a pipe");
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  QTUNE_CHECK(pid >= 0, "bench load: cannot fork");
  if (pid == 0) {
    ::dup2(fds[1], STDOUT_FILENO);
    ::close(fds[0]);
    ::close(fds[1]);
    ::execvp(c_argv[0], c_argv.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  std::string text;
  char buffer[256];
  for (ssize_t n; (n = ::read(fds[0], buffer, sizeof buffer)) > 0;) text.append(buffer, static_cast<size_t>(n));
  ::close(fds[0]);
  int wstatus = 0;
  ::waitpid(pid, &wstatus, 0);
  Measured m;
  std::istringstream in(text);
  const bool ok = WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0 &&
                  (in >> m.seconds >> m.peak_mb >> m.model_mb >> m.device_peak_mb);
  QTUNE_CHECK(ok, "bench load: the ", target, " load failed (child status ", wstatus, ", output '", text,
              WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 127 ? "'; is mpirun installed?)" : "')");
  return m;
}

}  // namespace

int run_load_bench(const LoadBenchOptions& options) {
  const models::LlamaConfig config = bench_config(options.small);
  const std::string dir =
      !options.dir.empty()
          ? options.dir
          : (fs::temp_directory_path() / (options.small ? "qtune_bench_load_small" : "qtune_bench_load_1b")).string();
  const Device device = parse_device(options.device);
  if (!options.measure.empty())
    return options.nproc > 0 ? measure_sharded(dir, options.measure, device.is_cuda())
                             : measure_one(dir, options.measure, device);
  QTUNE_CHECK(options.nproc >= 0, "bench load: --nproc must be 0 (one process) or more, got ", options.nproc);
  QTUNE_CHECK(options.nproc == 0 || !device.is_cuda() || options.device == "cuda" || options.device == "cuda:0",
              "bench load --nproc: device ", options.device,
              ": each rank loads onto its own GPU of the node (its local rank modulo the GPUs): use "
              "--device cuda");
  std::vector<std::string> targets = options.targets;
  if (targets.empty())
    targets = options.nproc > 0 || device.is_cuda() ? std::vector<std::string>{"bf16", "nf4"}
                                                    : std::vector<std::string>{"bf16", "nf4", "8da4w", "int4wo"};
  for (const std::string& target : targets) {
    // A bad name fails before the checkpoint is written.
    if (options.nproc > 0) {
      QTUNE_CHECK(target == "bf16" || target == "nf4", "bench load --nproc: the target ", target,
                  " does not load sharded (bf16 | nf4)");
    } else if (target != "bf16") {
      QTUNE_CHECK(quant::quantizes_on_gpu(quant::parse_weight_scheme(target)) || !device.is_cuda(),
                  "bench load: ", target, " weights are quantized on the CPU only; on ", device.str(),
                  " the targets are bf16 and nf4");
    }
  }
  if (device.is_cuda()) backend_for(device);  // no usable GPU: say so before a checkpoint is written

  if (checkpoint_complete(dir, config)) {
    fmt::print("checkpoint: {} (reused)\n", dir);
  } else {
    const auto t0 = Clock::now();
    write_checkpoint(dir, config);
    fmt::print("checkpoint: {} (written in {:.1f} s)\n", dir, seconds_since(t0));
  }
  const io::CheckpointFiles files = io::CheckpointFiles::open(dir);
  double params = 0, largest = 0;
  for (const std::string& name : files.names()) {
    const io::TensorEntry& e = files.entry(name);
    params += double(e.nbytes()) / 2.0;  // bf16
    largest = std::max(largest, double(e.nbytes()) / kMB);
  }
  fmt::print("{:.4f} B parameters in bf16, {:.0f} MB; largest tensor {:.1f} MB\n", params / 1e9,
             double(files.total_bytes()) / kMB, largest);
  // On a GPU the target bounds the GPU's peak; the host's peak RSS is reported beside it.
  const std::string bounded = device.is_cuda() ? "GPU peak" : "peak RSS";
  if (options.nproc > 0) {
    fmt::print("{} {}ranks, each loading its FSDP shard; the numbers are the highest of any rank\n", options.nproc,
               device.is_cuda() ? "GPU " : "");
    fmt::print("target {} per rank = its shard (with the whole embedding and head) + 2 x largest tensor{}\n\n", bounded,
               device.is_cuda() ? "" : " + 200 MB");
  } else {
    fmt::print("target {} = model + 2 x largest tensor{}\n\n", bounded,
               device.is_cuda() ? " (on " + device.str() + ")" : " + 200 MB");
  }
  fmt::print("| target | load s | peak RSS MB |{} {} MB | target peak MB | |\n|---|---|---|{}---|---|---|\n",
             device.is_cuda() ? " GPU peak MB |" : "", options.nproc > 0 ? "shard" : "model",
             device.is_cuda() ? "---|" : "");
  // This very binary, by its real path (a launched "/proc/self/exe" would name the launcher's own).
  const std::string self = fs::read_symlink("/proc/self/exe").string();
  bool all_pass = true;
  for (const std::string& target : targets) {
    std::vector<std::string> argv;
    if (options.nproc > 0) argv = dist::local_mpirun_command(options.nproc);
    argv.insert(argv.end(), {self, "bench", "load", "--dir", dir, "--measure", target, "--device", options.device});
    if (options.nproc > 0) argv.insert(argv.end(), {"--nproc", std::to_string(options.nproc)});
    const Measured m = measure_in_child(argv, target);
    // The 200 MB are the host's binary, libraries and MPI, which a GPU's allocator never holds.
    const double limit = m.model_mb + 2 * largest + (device.is_cuda() ? 0 : 200);
    const bool pass = (device.is_cuda() ? m.device_peak_mb : m.peak_mb) <= limit;
    all_pass = all_pass && pass;
    const std::string gpu_column = device.is_cuda() ? fmt::format(" {:.1f} |", m.device_peak_mb) : "";
    fmt::print("| {} | {:.2f} | {:.0f} |{} {:.0f} | {:.0f} | {} |\n", target, m.seconds, m.peak_mb, gpu_column,
               m.model_mb, limit, pass ? "PASS" : "FAIL");
    std::fflush(stdout);
  }
  return all_pass ? 0 : 1;
}

}  // namespace qtune::bench
