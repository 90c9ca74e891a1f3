// qtune: the command-line front end of the qtune library.
#include <cstdio>
#include <exception>
#include <optional>
#include <string>

#include <fmt/core.h>
#include <CLI/CLI.hpp>

#include "dist/world.h"
#include "qtune/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"qtune: fine-tune and quantize Llama-family models on CPU and NVIDIA GPUs", "qtune"};
  // At most one subcommand, checked after parsing: with require_subcommand(1) CLI11 reports a
  // mistyped command as "a subcommand is required" instead of naming the word it did not expect.
  app.require_subcommand(0, 1);

  int status = 0;
  qtune::cli::add_version_command(app, status);
  qtune::cli::add_bench_command(app, status);
  qtune::cli::add_demo_command(app, status);
  qtune::cli::add_tokenizer_command(app, status);
  qtune::cli::add_info_command(app, status);
  qtune::cli::add_generate_command(app, status);
  qtune::cli::add_data_command(app, status);
  qtune::cli::add_eval_command(app, status);
  qtune::cli::add_run_command(app, status);
  qtune::cli::add_plot_command(app, status);
  qtune::cli::add_quantize_command(app, status);
  qtune::cli::add_export_command(app, status);
  qtune::cli::add_plan_command(app, status);
  // New subcommands (demo, recipes, quantize, ...) are added here, one add_* call each.

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // CLI11's own wording ("The following arguments were not expected: ...") names the culprit; the
    // prefix says which program is complaining when qtune runs inside scripts.
    fmt::print(stderr, "qtune: ");
    const int code = app.exit(e);
    return code != 0 ? code : 2;
  } catch (const std::exception& e) {
    // Under mpirun every rank reports its own failure: say whose it is (collective errors already do).
    const std::optional<int> rank = qtune::dist::launched_rank();
    const std::string what = e.what();
    if (rank && what.rfind("rank ", 0) != 0) {
      fmt::print(stderr, "qtune: error: rank {}: {}\n", *rank, what);
    } else {
      fmt::print(stderr, "qtune: error: {}\n", what);
    }
    return 1;
  }
  if (app.get_subcommands().empty()) {
    fmt::print(stderr, "qtune: no command given\n{}", app.help());
    return 2;
  }
  return status;
}
