// `qtune version`: what this binary is and what it can use on this machine.
#include <string>
#include <thread>
#include <vector>

#include <fmt/core.h>
#include <qtune/qtune.h>

#include "qtune/commands.h"

namespace qtune::cli {
namespace {

// Features the CPU kernels and the GEMM libraries choose code paths by. Asked of the CPU at run time:
// the binary may run on a different machine from the one that built it.
std::string cpu_features() {
  std::vector<std::string> found;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("sse4.2")) found.emplace_back("sse4.2");
  if (__builtin_cpu_supports("avx")) found.emplace_back("avx");
  if (__builtin_cpu_supports("avx2")) found.emplace_back("avx2");
  if (__builtin_cpu_supports("fma")) found.emplace_back("fma");
  if (__builtin_cpu_supports("f16c")) found.emplace_back("f16c");
  if (__builtin_cpu_supports("avx512f")) found.emplace_back("avx512f");
  if (__builtin_cpu_supports("avx512bw")) found.emplace_back("avx512bw");
  if (__builtin_cpu_supports("avx512vl")) found.emplace_back("avx512vl");
  if (__builtin_cpu_supports("avx512vnni")) found.emplace_back("avx512vnni");
  if (__builtin_cpu_supports("avx512bf16")) found.emplace_back("avx512bf16");
  if (__builtin_cpu_supports("avxvnni")) found.emplace_back("avxvnni");
  if (__builtin_cpu_supports("amx-tile")) found.emplace_back("amx-tile");
#endif
  if (found.empty()) return "none of the x86 SIMD extensions qtune uses";
  std::string text;
  for (const auto& f : found) text += (text.empty() ? "" : " ") + f;
  return text;
}

int run_version() {
  Backend& cpu = backend_for(Device::cpu());
  fmt::print("qtune {}\n", QTUNE_VERSION_STRING);
  fmt::print("build type:   {}\n", QTUNE_BUILD_TYPE[0] != '\0' ? QTUNE_BUILD_TYPE : "(none)");
  fmt::print("compiler:     {}\n", __VERSION__);
  fmt::print("CPU GEMM:     {}\n", QTUNE_BLAS_NAME);
  for (DType dtype : {DType::f32, DType::bf16, DType::f16})
    fmt::print("  {:<5}       {}\n", std::string(dtype_name(dtype)) + ":", cpu.gemm_path(dtype));
  fmt::print("CPU features: {}\n", cpu_features());
  fmt::print("CPU threads:  {}\n", std::thread::hardware_concurrency());
#if QTUNE_CUDA_BUILT
  // cuda_device_count() already treats a driver error (no GPU, no driver) as zero devices.
  const int gpus = qtune::cuda_device_count();
#if QTUNE_CUDA_SIMULATED
  fmt::print("CUDA backend: simulated on the CPU (QTUNE_CUDA=SIM); {} simulated GPU{}\n", gpus, gpus == 1 ? "" : "s");
#else
  fmt::print("CUDA backend: compiled in; {} GPU{} visible\n", gpus, gpus == 1 ? "" : "s");
#endif
#else
  fmt::print("CUDA backend: not compiled in (configure with -DQTUNE_CUDA=ON and nvcc on PATH)\n");
#endif
  return 0;
}

}  // namespace

void add_version_command(CLI::App& app, int& status) {
  auto* cmd = app.add_subcommand("version", "Print the version, build settings, CPU features and visible GPUs");
  cmd->callback([&status] { status = run_version(); });
}

}  // namespace qtune::cli
