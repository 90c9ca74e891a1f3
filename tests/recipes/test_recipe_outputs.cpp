// What a run writes besides checkpoints: metrics.jsonl (exact doubles, truncation on resume), the
// progress display, and the gnuplot files of `qtune plot`.
#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "engine/check.h"
#include "llama_fixtures.h"
#include "tools/recipes/metrics.h"
#include "tools/recipes/plot.h"
#include "tools/recipes/progress.h"

using namespace qtune;
using namespace qtune::recipes;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

StepMetrics step(int64_t n, double loss) {
  StepMetrics m;
  m.step = n;
  m.total_steps = 12;
  m.loss = loss;
  m.lr = 1e-3 / double(n);
  m.grad_norm = 0.5;
  m.tokens_per_s = 1000 + double(n);
  m.peak_mem_bytes = 3 << 20;
  m.elapsed_s = double(n);
  return m;
}

// Everything a ProgressDisplay prints, through a temporary FILE.
struct Captured {
  std::FILE* file = std::tmpfile();
  ~Captured() { std::fclose(file); }
  std::string text() const {
    std::fflush(file);
    std::rewind(file);
    std::string out;
    for (int ch; (ch = std::fgetc(file)) != EOF;) out += static_cast<char>(ch);
    return out;
  }
};

}  // namespace

TEST_CASE("metrics.jsonl: doubles read back bit for bit; resume drops later and torn lines") {
  testing::ScratchDir dir("metrics");
  const std::string path = dir.str("metrics.jsonl");
  const double awkward = 0.1 + 0.2;  // 0.30000000000000004
  {
    MetricsLog log = MetricsLog::create(path);
    for (int64_t n = 1; n <= 5; ++n) log.log_step(step(n, awkward * double(n)));
    log.log_eval(3, awkward);
  }
  std::ofstream(path, std::ios::app) << "{\"step\": 6, \"loss\": 1.2";  // killed mid-line
  auto lines = read_metrics(path);
  REQUIRE(lines.size() == 6);
  CHECK(lines[0]["loss"].get<double>() == awkward);
  CHECK(lines[5]["eval_loss"].get<double>() == awkward);
  CHECK(lines[5]["eval_perplexity"].get<double>() == std::exp(awkward));
  CHECK(lines[2]["peak_mem_bytes"] == 3 << 20);

  {
    MetricsLog log = MetricsLog::resume(path, 3);
    log.log_step(step(4, 9.0));
  }
  lines = read_metrics(path);
  REQUIRE(lines.size() == 5);  // steps 1-3, the eval at 3, the new step 4
  CHECK(lines[3].contains("eval_loss"));
  CHECK(lines[4]["loss"].get<double>() == 9.0);
  CHECK(slurp(path).find("1.2\n") == std::string::npos);
  CHECK_THROWS_WITH_AS(read_metrics(dir.str("none.jsonl")), doctest::Contains("none.jsonl not found"), Error);
}

TEST_CASE("progress text") {
  CHECK(format_bytes(512) == "512 B");
  CHECK(format_bytes(3 << 20) == "3.0 MiB");
  CHECK(format_bytes(uint64_t{5} << 30) == "5.0 GiB");
  CHECK(format_duration(7.4) == "7s");
  CHECK(format_duration(185) == "3m05s");
  CHECK(format_duration(7620) == "2h07m");
  CHECK(format_step(step(3, 2.5), 65) ==
        "step 3/12 | loss 2.5000 | lr 3.33e-04 | 1003 tok/s | peak 3.0 MiB | ETA 1m05s");
  CHECK(format_step(step(3, 2.5), -1).find("ETA") == std::string::npos);
}

TEST_CASE("progress display: a line per log_every steps in a log, one rewritten line on a terminal") {
  Captured log;
  {
    ProgressDisplay display(log.file, /*terminal=*/false, /*log_every=*/5);
    for (int64_t n = 1; n <= 12; ++n) display.on_step(step(n, 1.0));
    display.finish();
  }
  const std::string text = log.text();
  CHECK(text.find("step 5/12") != std::string::npos);
  CHECK(text.find("step 10/12") != std::string::npos);
  CHECK(text.find("step 12/12") != std::string::npos);
  CHECK(text.find("step 4/12") == std::string::npos);
  CHECK(text.find('\r') == std::string::npos);

  Captured tty;
  {
    ProgressDisplay display(tty.file, /*terminal=*/true, /*log_every=*/5);
    for (int64_t n = 1; n <= 3; ++n) display.on_step(step(n, 1.0));
    display.on_eval(3, 1.5);
    display.on_step(step(4, 1.0));
    display.finish();
  }
  const std::string screen = tty.text();
  CHECK(screen.rfind("\rstep 1/12", 0) == 0);
  CHECK(screen.find("\rstep 3/12") != std::string::npos);
  CHECK(screen.find("\neval at step 3 | loss 1.5000 | perplexity 4.48\n\rstep 4/12") != std::string::npos);
  CHECK(screen.back() == '\n');
}

TEST_CASE("plot files: data columns, eval curve only with eval lines, and an error without steps") {
  testing::ScratchDir dir("plot");
  {
    MetricsLog log = MetricsLog::create(dir.str("metrics.jsonl"));
    log.log_step(step(1, 4.0));
    log.log_step(step(2, 3.0));
  }
  PlotFiles files = write_plot_files(dir.str());
  CHECK(files.image == dir.str("curves.png"));
  CHECK(slurp(files.train_data) == "# step loss lr tokens_per_s grad_norm\n1 4 0.001 1001 0.5\n2 3 0.0005 1002 0.5\n");
  CHECK(slurp(files.script).find("curves_eval.dat") == std::string::npos);
  CHECK(slurp(files.script).find("set output 'curves.png'") != std::string::npos);

  {
    MetricsLog log = MetricsLog::resume(dir.str("metrics.jsonl"), 2);
    log.log_eval(2, 3.5);
  }
  files = write_plot_files(dir.str());
  CHECK(slurp(files.eval_data) == "# step eval_loss\n2 3.5\n");
  CHECK(slurp(files.script).find("'curves_eval.dat' using 1:2") != std::string::npos);

  testing::ScratchDir empty("plot_empty");
  MetricsLog::create(empty.str("metrics.jsonl"));
  CHECK_THROWS_WITH_AS(write_plot_files(empty.str()), doctest::Contains("no training steps yet"), Error);
}

TEST_CASE("find_on_path") {
  CHECK(find_on_path("sh").has_value());
  CHECK(!find_on_path("qtune-no-such-program").has_value());
}
