#include <fmt/core.h>

#include <string>

#include "qtune/commands.h"

namespace qtune::cli {

CLI::App* add_command_group(CLI::App& app, const std::string& name, const std::string& description, int& status) {
  CLI::App* group = app.add_subcommand(name, description);
  group->require_subcommand(0, 1);  // see main.cpp: lets CLI11 name a mistyped subcommand
  group->callback([group, &status] {
    if (!group->get_subcommands().empty()) return;
    std::string names;
    for (const CLI::App* sub : group->get_subcommands([](CLI::App*) { return true; })) {
      names += (names.empty() ? "" : ", ") + sub->get_name();
    }
    fmt::print(stderr, "qtune {}: name a subcommand ({})\n{}", group->get_name(), names, group->help());
    status = 2;
  });
  return group;
}

}  // namespace qtune::cli
