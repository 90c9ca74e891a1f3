#pragma once
// `qtune demo` until the full recipe demo lands: trains a tiny byte-level transformer on the
// fortunes corpus with the engine's ops and autograd, reports held-out loss, and samples text.
#include <cstdint>
#include <memory>
#include <string>

namespace qtune::cli {

struct DemoOptions {
  std::string corpus_dir = "/usr/share/games/fortunes";
  std::string out_dir = "qtune-demo";
  int64_t steps = 1000;
  int64_t seed = 1;
};

int run_demo(const DemoOptions& options);

}  // namespace qtune::cli
