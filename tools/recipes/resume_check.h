#pragma once
// Whether a run may continue from a checkpoint saved under another config: everything that changes
// what a step computes (model, data, optimizer, schedule, accumulation, seed) must be equal. The run's
// length, eval/save/log cadence, activation checkpointing, device and output_dir may change.
#include <string>

#include "tools/recipes/run_config.h"

namespace qtune::recipes {

// An Error naming the first differing key (in run_config_keys() order; inside model.config, the field),
// both values and the checkpoint. Input paths compare by the file they reach. Accumulation compares as the
// batches a step takes, train.grad_accum x ranks: a run saved by 4 FSDP ranks continues on 2 with
// train.grad_accum=2, or on one process with 4.
void check_resume_compatible(const RunConfig& current, int64_t ranks, const std::string& saved_config_json,
                             int64_t saved_ranks, const std::string& checkpoint_dir);

}  // namespace qtune::recipes
