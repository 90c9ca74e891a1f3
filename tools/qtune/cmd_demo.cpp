// `qtune demo`: the README's first command, the main job on the embedded default.
#include "qtune/commands.h"
#include "qtune/demo_tiny_lm.h"

namespace qtune::cli {

void add_demo_command(CLI::App& app, int& status) {
  auto options = std::make_shared<DemoOptions>();
  CLI::App* cmd = app.add_subcommand(
      "demo", "Train a small byte-level transformer on the fortunes corpus and sample from it (CPU, a minute)");
  cmd->add_option("--corpus", options->corpus_dir, "directory of fortune files")->capture_default_str();
  cmd->add_option("--out", options->out_dir, "output directory (metrics.jsonl)")->capture_default_str();
  cmd->add_option("--steps", options->steps, "training steps")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--seed", options->seed, "random seed")->capture_default_str();
  cmd->callback([options, &status] { status = run_demo(*options); });
}

}  // namespace qtune::cli
