#pragma once
// `qtune plot`: loss curves of a run directory as a picture. The data (curves_train.dat,
// curves_eval.dat) and a gnuplot script (curves.gp, run from the run directory) are written first, then
// gnuplot draws RUN_DIR/curves.png: train and eval loss, learning rate, and tokens/s against the step.
#include <optional>
#include <string>

namespace qtune::recipes {

struct PlotFiles {
  std::string script, train_data, eval_data, image;
};

// Reads RUN_DIR/metrics.jsonl and writes the data files and the script. An Error when the run has no
// step lines yet.
PlotFiles write_plot_files(const std::string& run_dir);

// The full path of an executable found on $PATH.
std::optional<std::string> find_on_path(const std::string& program);

// Runs `gnuplot curves.gp` in the run directory; an Error when it fails.
void run_gnuplot(const std::string& gnuplot, const std::string& run_dir);

}  // namespace qtune::recipes
