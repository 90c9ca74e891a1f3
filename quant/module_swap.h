#pragma once
// The walk every module pass shares (QAT prepare/convert, NF4, float8, LoRA): visit the tree and put a
// replacement in place of each selected module.
#include <cstdint>
#include <functional>
#include <string_view>

#include "engine/module.h"

namespace qtune::quant {

// Builds the replacement of `module` (at `fqn`), or returns null to leave it in place.
using ModuleFactory = std::function<ModulePtr(Module& module, std::string_view fqn)>;

// For every module below `root` (parents before children) that `filter` selects, calls `make` and swaps
// a non-null result in through Module::replace_module. The tree is listed before anything changes, and
// the descendants of a replaced module are not visited (the replacement owns them now). The root itself
// is never replaced. Returns how many modules were replaced.
int64_t swap_modules(Module& root, const ModuleFilter& filter, const ModuleFactory& make);

}  // namespace qtune::quant
