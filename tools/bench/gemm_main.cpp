// Standalone `qtune bench gemm`, usable without the CLI.
//   qtune_bench_gemm [--shape MxNxK]... [--repeats N] [--warmup N] [--dtype f32|f64|bf16|f16]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "tools/bench/gemm_bench.h"

namespace {

int usage(const char* argv0) {
  std::fprintf(stderr, "usage: %s [--shape MxNxK]... [--repeats N] [--warmup N] [--dtype f32|f64|bf16|f16]\n", argv0);
  return 2;
}

bool parse_shape(const std::string& s, std::array<int64_t, 3>& out) {
  long long m = 0, n = 0, k = 0;
  char tail = 0;
  if (std::sscanf(s.c_str(), "%lldx%lldx%lld%c", &m, &n, &k, &tail) != 3 || m <= 0 || n <= 0 || k <= 0) return false;
  out = {m, n, k};
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  qtune::bench::GemmBenchOptions opt;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") return usage(argv[0]), 0;
    if (i + 1 >= argc) return usage(argv[0]);
    const std::string value = argv[++i];
    if (arg == "--shape") {
      std::array<int64_t, 3> s{};
      if (!parse_shape(value, s)) return std::fprintf(stderr, "bad --shape '%s' (want MxNxK)\n", value.c_str()), 2;
      opt.shapes.push_back(s);
    } else if (arg == "--repeats") {
      opt.repeats = std::atoi(value.c_str());
    } else if (arg == "--warmup") {
      opt.warmup = std::atoi(value.c_str());
    } else if (arg == "--dtype") {
      opt.dtype = value;
    } else {
      return usage(argv[0]);
    }
  }
  return qtune::bench::run_gemm_bench(opt);
}
