#include "tools/bench/gemm_bench.h"

#include <Eigen/Core>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <numeric>
#include <thread>

#if defined(_OPENMP)
#include <omp.h>
#endif
#if defined(QTUNE_BENCH_HAVE_OPENBLAS)
#include <cblas.h>
#endif
#if defined(QTUNE_BENCH_HAVE_DNNL)
#include <oneapi/dnnl/dnnl.h>
#endif

#include "engine/backend.h"
#include "engine/check.h"
#include "engine/rng.h"
#include "engine/tensor.h"
#include "tools/bench/bench_clock.h"

#ifndef QTUNE_BENCH_QTUNE_BLAS
#define QTUNE_BENCH_QTUNE_BLAS "unknown"
#endif

namespace qtune::bench {
namespace {

struct Timing {
  std::string library;
  double best_gflops = 0, median_gflops = 0;
  // From the mean process CPU time per run spread over the threads: close to the uncontended rate when other
  // processes steal time slices (a shared build machine); threads spinning at a barrier count too.
  double cpu_gflops = 0;
};

struct Candidate {
  std::string library;
  std::function<void()> run;
  std::vector<double> seconds;
  std::vector<double> cpu_seconds = {};
};

// Round-robin: every repeat times each candidate once in turn, so load from other processes that
// drifts during the benchmark hits all of them alike instead of whichever happened to run then.
std::vector<Timing> time_all(std::vector<Candidate>& cands, double flops, int warmup, int repeats) {
  for (int i = 0; i < warmup; ++i)
    for (Candidate& c : cands) c.run();
  for (int i = 0; i < repeats; ++i)
    for (Candidate& c : cands) {
      const double cpu0 = process_cpu_seconds();
      const auto t0 = Clock::now();
      c.run();
      c.seconds.push_back(seconds_since(t0));
      c.cpu_seconds.push_back(process_cpu_seconds() - cpu0);
    }
  std::vector<Timing> out;
  for (Candidate& c : cands) {
    std::vector<double>& s = c.seconds;
    std::sort(s.begin(), s.end());
    const double median = repeats % 2 ? s[repeats / 2] : 0.5 * (s[repeats / 2 - 1] + s[repeats / 2]);
    // The mean, not the smallest: the process clock counts a worker thread's time only when the kernel next
    // accounts for it, so a short run can show one thread's time only (train_bench.cpp's time_gemm says more).
    // Time a run leaves uncounted lands in the next candidate's run, about one scheduler tick per run.
    const double cpu_mean = std::accumulate(c.cpu_seconds.begin(), c.cpu_seconds.end(), 0.0) /
                            double(c.cpu_seconds.size()) / worker_threads();
    out.push_back({c.library, flops / s.front() * 1e-9, flops / median * 1e-9, flops / cpu_mean * 1e-9});
  }
  return out;
}

void print_header() {
  const char* coretype = std::getenv("OPENBLAS_CORETYPE");
  const char* omp_env = std::getenv("OMP_NUM_THREADS");
  std::printf("qtune GEMM benchmark: C[M,N] = A[M,K] @ B[N,K]^T (row-major; B is a linear layer's weight)\n");
  std::printf("qtune GEMM library (QTUNE_BLAS): %s\n", QTUNE_BENCH_QTUNE_BLAS);
  std::printf("hardware threads: %u, OMP_NUM_THREADS=%s", std::thread::hardware_concurrency(),
              omp_env ? omp_env : "(unset)");
#if defined(_OPENMP)
  std::printf(", omp_get_max_threads()=%d", omp_get_max_threads());
#endif
  std::printf(", Eigen threads=%d\n", Eigen::nbThreads());
#if defined(QTUNE_BENCH_HAVE_OPENBLAS)
  const int par = openblas_get_parallel();
  std::printf("OpenBLAS: %s, core %s, %d threads, %s build; OPENBLAS_CORETYPE=%s\n", openblas_get_config(),
              openblas_get_corename(), openblas_get_num_threads(),
              par == 0   ? "sequential"
              : par == 1 ? "pthread"
                         : "OpenMP",
              coretype ? coretype : "(unset)");
#else
  std::printf("OpenBLAS: not built in; OPENBLAS_CORETYPE=%s\n", coretype ? coretype : "(unset)");
#endif
#if defined(QTUNE_BENCH_HAVE_DNNL)
  const dnnl_version_t* v = dnnl_version();
  std::printf("oneDNN: %d.%d.%d (%s)\n", v->major, v->minor, v->patch,
              v->cpu_runtime == DNNL_RUNTIME_OMP ? "OpenMP" : "other");
#endif
}

}  // namespace

int run_gemm_bench(const GemmBenchOptions& options) {
  GemmBenchOptions opt = options;
  if (opt.shapes.empty()) opt.shapes = {{4096, 4096, 4096}, {2048, 4096, 4096}, {2048, 11008, 4096}};
  if (opt.repeats < 1 || opt.warmup < 0) {
    std::fprintf(stderr, "gemm bench: repeats must be >= 1 and warmup >= 0 (got %d, %d)\n", opt.repeats, opt.warmup);
    return 1;
  }
  DType dtype;
  try {
    dtype = dtype_from_name(opt.dtype);
    QTUNE_CHECK(dtype == DType::f32 || dtype == DType::f64 || dtype == DType::bf16 || dtype == DType::f16,
                "gemm bench: dtype must be f32, f64, bf16 or f16, got ", opt.dtype);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }

  print_header();
  Backend& cpu = backend_for(Device::cpu());
  std::printf("repeats %d (after %d warm-up), qtune dtype %s (%s), libraries f32\n\n", opt.repeats, opt.warmup,
              opt.dtype.c_str(), cpu.gemm_path(dtype).c_str());
  std::printf(
      "cpu GF/s: FLOPs over (process CPU seconds / %d threads), mean of the runs: the rate without other\n"
      "processes' time slices; when it is well above 'best', the machine was busy and the wall-clock figures are\n"
      "low.\n\n",
      worker_threads());
  std::printf("%-18s %-22s %12s %12s %12s\n", "M x N x K", "library", "best GF/s", "median GF/s", "cpu GF/s");
  for (const auto& [m, n, k] : opt.shapes) {
    const double flops = 2.0 * double(m) * double(n) * double(k);
    // Operands in qtune Tensors; the libraries read the same f32 buffers so page placement is shared.
    Tensor a = Tensor::empty({1, m, k}, DType::f32), b = Tensor::empty({1, n, k}, DType::f32);
    Tensor c = Tensor::zeros({1, m, n}, DType::f32);
    cpu.fill_uniform(a, 1, 0, -1.0, 1.0);
    cpu.fill_uniform(b, 2, 0, -1.0, 1.0);
    const float* pa = static_cast<const float*>(a.data_ptr());
    const float* pb = static_cast<const float*>(b.data_ptr());
    float* pc = static_cast<float*>(c.data_ptr());

    using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    Eigen::Map<const RowMat> A(pa, m, k), B(pb, n, k);
    Eigen::Map<RowMat> C(pc, m, n);
    std::vector<Candidate> cands;
    cands.push_back({"eigen", [&] { C.noalias() = A * B.transpose(); }, {}});
#if defined(QTUNE_BENCH_HAVE_OPENBLAS)
    cands.push_back({"openblas",
                     [&] {
                       cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(m), int(n), int(k), 1.0f, pa, int(k),
                                   pb, int(k), 0.0f, pc, int(n));
                     },
                     {}});
#endif
#if defined(QTUNE_BENCH_HAVE_DNNL)
    cands.push_back({"onednn",
                     [&] {
                       QTUNE_CHECK(dnnl_sgemm('N', 'T', m, n, k, 1.0f, pa, k, pb, k, 0.0f, pc, n) == dnnl_success,
                                   "dnnl_sgemm failed");
                     },
                     {}});
#endif
    // qtune gets its own operands and output, in its dtype, so nothing aliases the libraries' f32 buffers.
    Tensor qa = dtype == DType::f32 ? a : a.to(dtype), qb = dtype == DType::f32 ? b : b.to(dtype);
    Tensor qc = Tensor::empty({1, m, n}, dtype);
    cands.push_back({std::string("qtune ") + opt.dtype + " (" + QTUNE_BENCH_QTUNE_BLAS + ")",
                     [&] { cpu.gemm(qa, false, qb, true, qc, 1.0, 0.0); },
                     {}});
    std::vector<Timing> timings = time_all(cands, flops, opt.warmup, opt.repeats);
    const Timing q = timings.back();
    timings.pop_back();
    const std::vector<Timing>& libs = timings;
    const Timing* fastest = &libs.front();
    for (const Timing& t : libs)
      if (t.best_gflops > fastest->best_gflops) fastest = &t;

    char shape[64];
    std::snprintf(shape, sizeof shape, "%lldx%lldx%lld", (long long)m, (long long)n, (long long)k);
    for (const Timing& t : libs)
      std::printf("%-18s %-22s %12.1f %12.1f %12.1f\n", shape, t.library.c_str(), t.best_gflops, t.median_gflops,
                  t.cpu_gflops);
    std::printf("%-18s %-22s %12.1f %12.1f %12.1f\n", shape, q.library.c_str(), q.best_gflops, q.median_gflops,
                q.cpu_gflops);
    std::printf("%-18s qtune vs fastest (%s): %.1f%% best, %.1f%% median, %.1f%% cpu\n\n", shape,
                fastest->library.c_str(), 100.0 * q.best_gflops / fastest->best_gflops,
                100.0 * q.median_gflops / fastest->median_gflops, 100.0 * q.cpu_gflops / fastest->cpu_gflops);
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace qtune::bench
