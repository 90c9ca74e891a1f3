// `qtune plot RUN_DIR`: draw a run's loss curves (RUN_DIR/curves.png) with gnuplot.
#include <memory>
#include <string>

#include <fmt/core.h>

#include "qtune/commands.h"
#include "tools/recipes/plot.h"

namespace qtune::cli {
namespace {

int plot(const std::string& run_dir) {
  const recipes::PlotFiles files = recipes::write_plot_files(run_dir);
  const auto gnuplot = recipes::find_on_path("gnuplot");
  if (!gnuplot) {
    fmt::print(stderr,
               "qtune: gnuplot not found on PATH: install it (apt-get install gnuplot-nox), then run "
               "`cd {} && gnuplot curves.gp`; the script and its data are written: {}\n",
               run_dir, files.script);
    return 1;
  }
  recipes::run_gnuplot(*gnuplot, run_dir);
  fmt::print("wrote {}\n", files.image);
  return 0;
}

}  // namespace

void add_plot_command(CLI::App& app, int& status) {
  auto* cmd = app.add_subcommand("plot", "Draw a run's curves (train/eval loss, lr, tokens/s) into RUN_DIR/curves.png");
  auto run_dir = std::make_shared<std::string>();
  cmd->add_option("run_dir", *run_dir, "output directory of a `qtune run` (holds metrics.jsonl)")->required();
  cmd->callback([run_dir, &status] { status = plot(*run_dir); });
}

}  // namespace qtune::cli
