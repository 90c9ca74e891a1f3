// `qtune run RECIPE --config FILE [key=value ...]`: train with a recipe (tools/recipes), showing progress
// as it goes and a summary at the end.
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <fmt/core.h>

#include "dist/world.h"
#include "engine/check.h"
#include "qtune/commands.h"
#include "tools/recipes/model_passes.h"
#include "tools/recipes/progress.h"
#include "tools/recipes/recipe.h"
#include "tools/recipes/run_config.h"
#include "tools/recipes/trainer.h"

namespace qtune::cli {
namespace {

struct RunArgs {
  std::string recipe, config;
  std::vector<std::string> overrides;
  bool print_config = false;
  int nproc = 0;
};

// --nproc N: this same command again as N ranks of an mpirun job (FSDP), in place of this process.
[[noreturn]] void exec_mpirun(const RunArgs& args) {
  std::vector<std::string> argv = dist::local_mpirun_command(args.nproc);
  // This very binary, by its real path (a launched "/proc/self/exe" would name the launcher's own).
  argv.insert(argv.end(),
              {std::filesystem::read_symlink("/proc/self/exe").string(), "run", args.recipe, "--config", args.config});
  argv.insert(argv.end(), args.overrides.begin(), args.overrides.end());
  std::vector<char*> c_argv;
  for (std::string& a : argv) c_argv.push_back(a.data());
  c_argv.push_back(nullptr);
  std::fflush(nullptr);
  ::execvp("mpirun", c_argv.data());
  QTUNE_FAIL("--nproc ", args.nproc, ": cannot start mpirun (", std::strerror(errno),
             "); install Open MPI (apt-get install openmpi-bin) or start the ranks yourself: mpirun -np ", args.nproc,
             " qtune run ...");
}

int run(const RunArgs& args) {
  const recipes::Recipe recipe = recipes::parse_recipe(args.recipe);
  const recipes::RunConfig config = recipes::load_run_config(args.config, args.overrides, recipe);
  if (args.nproc > 0 && !args.print_config) exec_mpirun(args);
  if (args.print_config) {
    fmt::print("{}\n", recipes::run_config_to_json(config));
    return 0;
  }

  recipes::ProgressDisplay progress(stderr, ::isatty(::fileno(stderr)) != 0, config.train.log_every);
  recipes::TrainHooks hooks;
  hooks.on_step = [&](const recipes::StepMetrics& m) { progress.on_step(m); };
  hooks.on_eval = [&](int64_t step, double loss) { progress.on_eval(step, loss); };
  hooks.on_note = [&](const std::string& text) {
    progress.finish();
    fmt::print(stderr, "[run] {}\n", text);
  };
  recipes::add_model_passes(config, hooks);
  const recipes::TrainResult result = recipes::train(config, hooks);
  progress.finish();
  if (result.rank != 0) return 0;  // rank 0 reports for the job

  if (result.start_step == result.steps) {
    fmt::print("done: the run had already finished its {} steps (nothing to train); final loss {:.4f}", result.steps,
               result.final_loss);
  } else {
    fmt::print("done: steps {}..{} of {} in {}; final loss {:.4f}", result.start_step + 1, result.steps, result.steps,
               recipes::format_duration(result.train_seconds), result.final_loss);
  }
  if (!std::isnan(result.final_eval_loss)) {
    fmt::print("; eval loss {:.4f} (perplexity {:.2f})", result.final_eval_loss, std::exp(result.final_eval_loss));
  }
  fmt::print("\nmodel: {}\nmetrics: {}/metrics.jsonl (curves: qtune plot {})\n", result.final_dir, config.output_dir,
             config.output_dir);
  if (config.recipe == recipes::Recipe::qat) {
    fmt::print("quantize it: {}\n", recipes::qat_quantize_command(config.quant, result.final_dir));
  }
  if (const auto command = recipes::gguf_export_command(config, result.final_dir)) {
    fmt::print("export it for llama.cpp (GGUF, the weights it trained with): {}\n", *command);
  }
  if (recipes::trains_adapters(config.recipe)) {
    fmt::print("{} holds the adapter (HF PEFT); use it with --adapter in qtune eval/generate, or merge it:\n  {}\n",
               result.final_dir, recipes::lora_export_command(config, result.final_dir));
  }
  return 0;
}

}  // namespace

void add_run_command(CLI::App& app, int& status) {
  auto* cmd =
      app.add_subcommand("run", "Train with a recipe: qtune run full --config configs/tiny_shakespeare_full.json");
  auto args = std::make_shared<RunArgs>();
  cmd->add_option("recipe", args->recipe, "recipe: " + std::string(recipes::recipe_names()))->required();
  cmd->add_option("--config", args->config, "run config (JSON; keys in docs/config.md)")->required();
  cmd->add_option("overrides", args->overrides,
                  "key=value overrides of config keys, e.g. optim.lr=1e-4 train.resume=true");
  cmd->add_flag("--print-config", args->print_config, "print the resolved config (file + overrides) and exit");
  cmd->add_option("--nproc", args->nproc, "train as N MPI ranks with FSDP (starts mpirun -np N; docs/distributed.md)")
      ->check(CLI::Range(1, 4096));
  cmd->callback([args, &status] { status = run(*args); });
}

}  // namespace qtune::cli
