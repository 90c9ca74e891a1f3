#pragma once
// Whether a run may continue from a checkpoint saved under another config: everything that changes
// what a step computes (model, data, optimizer, schedule, accumulation, seed) must be equal. The run's
// length, eval/save/log cadence, activation checkpointing, device and output_dir may change.
#include <string>

#include "tools/recipes/run_config.h"

namespace qtune::recipes {

// An Error naming the first differing key (in run_config_keys() order; inside model.config, the field),
// both values and the checkpoint. Input paths compare by the file they reach.
void check_resume_compatible(const RunConfig& current, const std::string& saved_config_json,
                             const std::string& checkpoint_dir);

}  // namespace qtune::recipes
