#include "tools/recipes/plot.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include <fmt/core.h>

#include "engine/check.h"
#include "engine/io/atomic_file.h"
#include "tools/recipes/metrics.h"

namespace qtune::recipes {
namespace {

namespace fs = std::filesystem;

// The script names its files relative to the run directory, so the directory can move with it.
std::string gnuplot_script(bool have_eval) {
  std::string s =
      "# Loss curves of a qtune run (`qtune plot`). Run from this directory: gnuplot curves.gp\n"
      "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
      "  set terminal pngcairo size 1000,1100\n"
      "} else {\n"
      "  set terminal png size 1000,1100\n"
      "}\n"
      "set output 'curves.png'\n"
      "set multiplot layout 3,1\n"
      "set grid\n"
      "set xlabel 'step'\n"
      "set key top right\n"
      "set ylabel 'loss'\n"
      "plot 'curves_train.dat' using 1:2 with lines lw 2 title 'train loss'";
  if (have_eval) s += ", \\\n     'curves_eval.dat' using 1:2 with linespoints lw 2 pt 7 title 'eval loss'";
  s += "\n"
       "set ylabel 'learning rate'\n"
       "plot 'curves_train.dat' using 1:3 with lines lw 2 notitle\n"
       "set ylabel 'tokens/s'\n"
       "plot 'curves_train.dat' using 1:4 with lines lw 2 notitle\n"
       "unset multiplot\n";
  return s;
}

}  // namespace

PlotFiles write_plot_files(const std::string& run_dir) {
  const fs::path dir(run_dir);
  const auto lines = read_metrics((dir / "metrics.jsonl").string());
  std::ostringstream train, eval;
  train << "# step loss lr tokens_per_s grad_norm\n";
  eval << "# step eval_loss\n";
  bool have_train = false, have_eval = false;
  for (const auto& line : lines) {
    const int64_t step = line["step"].get<int64_t>();
    if (line.contains("loss") && line["loss"].is_number()) {
      train << fmt::format("{} {} {} {} {}\n", step, line["loss"].get<double>(), line.value("lr", 0.0),
                           line.value("tokens_per_s", 0.0), line.value("grad_norm", 0.0));
      have_train = true;
    } else if (line.contains("eval_loss") && line["eval_loss"].is_number()) {
      eval << fmt::format("{} {}\n", step, line["eval_loss"].get<double>());
      have_eval = true;
    }
  }
  QTUNE_CHECK(have_train, (dir / "metrics.jsonl").string(), " has no training steps yet: nothing to plot");
  PlotFiles files{(dir / "curves.gp").string(), (dir / "curves_train.dat").string(), (dir / "curves_eval.dat").string(),
                  (dir / "curves.png").string()};
  io::write_file_atomic(files.train_data, train.str());
  io::write_file_atomic(files.eval_data, eval.str());
  io::write_file_atomic(files.script, gnuplot_script(have_eval));
  return files;
}

std::optional<std::string> find_on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return std::nullopt;
  std::istringstream dirs(path);
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const fs::path candidate = fs::path(dir.empty() ? "." : dir) / program;
    if (fs::is_regular_file(candidate) && ::access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return std::nullopt;
}

void run_gnuplot(const std::string& gnuplot, const std::string& run_dir) {
  const pid_t pid = ::fork();
  QTUNE_CHECK(pid >= 0, "cannot start ", gnuplot, ": fork failed");
  if (pid == 0) {
    // Child: only async-signal-safe calls until exec.
    if (::chdir(run_dir.c_str()) != 0) ::_exit(126);
    ::execl(gnuplot.c_str(), gnuplot.c_str(), "curves.gp", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    QTUNE_CHECK(errno == EINTR, "waiting for ", gnuplot, " failed");
  }
  QTUNE_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, gnuplot, " failed on ", run_dir,
              "/curves.gp (exit status ", WIFEXITED(status) ? WEXITSTATUS(status) : -1, "); its messages are above");
}

}  // namespace qtune::recipes
