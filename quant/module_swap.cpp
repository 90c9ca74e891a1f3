#include "quant/module_swap.h"

#include <string>
#include <utility>
#include <vector>

namespace qtune::quant {

int64_t swap_modules(Module& root, const ModuleFilter& filter, const ModuleFactory& make) {
  const std::vector<std::pair<std::string, Module*>> modules = root.named_modules();
  int64_t replaced = 0;
  std::string skip_below;  // the last replaced module's name + ".": its subtree is no longer in the tree
  for (const auto& [fqn, module] : modules) {
    if (fqn.empty()) continue;
    if (!skip_below.empty() && fqn.starts_with(skip_below)) continue;
    if (!filter(*module, fqn)) continue;
    ModulePtr replacement = make(*module, fqn);
    if (!replacement) continue;
    root.replace_module(fqn, std::move(replacement));  // releases `module`; only names are read after this
    skip_below = fqn + ".";
    ++replaced;
  }
  return replaced;
}

}  // namespace qtune::quant
