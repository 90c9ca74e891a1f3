#pragma once
// Training checkpoints on disk (layout in trainer.h): output_dir/checkpoints/step_<N>/ holds an HF model
// directory plus optimizer.safetensors and trainer_state.json. A checkpoint is written under
// checkpoints/.step_<N>.tmp-<pid> and renamed when complete (io::StagedDirectory, which also finishes or removes
// what a killed run left); trainer_state.json is its last file, so a step_<N> directory without a readable
// trainer_state.json is incomplete and ignored.
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <string>

#include "data/data_loader.h"
#include "models/llama.h"
#include "optim/optimizer.h"

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
  // "data.train" / "data.eval" -> io::file_fingerprint when saved; empty in states written before qtune kept them.
  std::map<std::string, std::string> data_fingerprints;
};

// Writes a model's weights into a directory: models::save_llama (an HF model directory) unless a recipe
// stores something else (the LoRA recipes: PEFT adapter files).
using WeightsWriter = std::function<void(models::Llama& model, const std::string& dir)>;

// Writes checkpoints/step_<state.step> atomically and returns its path. `tokenizer_source` is the
// tokenizer file or directory whose files are copied in, so the checkpoint is a loadable model directory.
std::string save_checkpoint(const std::string& output_dir, models::Llama& model, const std::string& tokenizer_source,
                            const optim::Optimizer& optimizer, const TrainerState& state,
                            const WeightsWriter& write_weights = nullptr);

// The newest complete checkpoint directory in output_dir/checkpoints, if any.
std::optional<std::string> latest_checkpoint(const std::string& output_dir);
// Deletes all but the newest `keep` complete checkpoints.
void prune_checkpoints(const std::string& output_dir, int64_t keep);

TrainerState read_trainer_state(const std::string& checkpoint_dir);
// optimizer.safetensors + the scalars of `state`, for Optimizer::load_state.
optim::OptimizerState read_optimizer_state(const std::string& checkpoint_dir, const TrainerState& state);

// Writes `dir` as an HF model directory (weights in the model's dtype, tokenizer files) atomically:
// built under a temporary name beside it, then swapped in.
void save_model_dir(models::Llama& model, const std::string& tokenizer_source, const std::string& dir,
                    const WeightsWriter& write_weights = nullptr);

}  // namespace qtune::recipes
