#pragma once
// trainer_state.json, the last file of a checkpoint (tools/recipes/checkpoint.h): what a resumed run needs
// besides the weights and the optimizer tensors.
#include <cstdint>
#include <limits>
#include <map>
#include <string>

#include "data/data_loader.h"

namespace qtune::recipes {

// Everything besides weights and optimizer tensors that a resumed run needs to continue bit-identically.
struct TrainerState {
  int64_t step = 0;         // optimizer steps taken
  int64_t total_steps = 0;  // the run's length when saved
  data::DataPosition data;
  uint64_t rng_seed = 0, rng_offset = 0;  // qtune::default_generator()
  std::map<std::string, double> optimizer_scalars;
  double elapsed_s = 0;   // training time so far (resumed runs keep counting)
  double loss = 0;        // the loss of step `step`
  int64_t eval_step = 0;  // last step evaluated (0: none yet)
  double eval_loss = std::numeric_limits<double>::quiet_NaN();
  std::string config_json;  // run_config_to_json of the run that saved it
  int64_t ranks = 1;        // FSDP ranks of that run: a step took config's train.grad_accum x ranks batches
  // "data.train" / "data.eval" -> io::file_fingerprint when saved; empty in states written before qtune kept them.
  std::map<std::string, std::string> data_fingerprints;
};

std::string trainer_state_to_json(const TrainerState& state);
// Parses trainer_state.json text; every field is checked and a failure names `source` and the key.
TrainerState parse_trainer_state(const std::string& json_text, const std::string& source);
// <checkpoint_dir>/trainer_state.json; an Error when it is absent (the checkpoint is incomplete).
TrainerState read_trainer_state(const std::string& checkpoint_dir);

}  // namespace qtune::recipes
