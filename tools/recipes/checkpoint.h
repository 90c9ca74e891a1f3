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
#include "models/sharded_llama.h"
#include "optim/optimizer.h"
#include "tools/recipes/trainer_state.h"

namespace qtune::recipes {

// Writes a model's weights into a directory: models::save_llama (an HF model directory) unless a recipe
// stores something else (the LoRA recipes: PEFT adapter files).
// Each tensor it writes is read through `read` (models/tensor_reader.h).
using WeightsWriter =
    std::function<void(models::Llama& model, const std::string& dir, const models::TensorReader& read)>;

// Writes checkpoints/step_<state.step> atomically and returns its path. `tokenizer_source` is the
// tokenizer file or directory whose files are copied in, so the checkpoint is a loadable model directory.
// Under FSDP (`sharded`: the rank-0 reader of ShardedLlama::consolidate) the model's tensors and the
// optimizer's (then pieces) are read whole from the ranks one at a time, as the files are written.
std::string save_checkpoint(const std::string& output_dir, models::Llama& model, const std::string& tokenizer_source,
                            const optim::OptimizerState& optimizer_state, const TrainerState& state,
                            const WeightsWriter& write_weights = nullptr,
                            const models::ShardedLlama::WholeReader* sharded = nullptr);

// dist.sharded_checkpoints: writes checkpoints/step_<state.step> atomically around `shards_dir`, the ranks'
// files and index (tools/recipes/sharded_checkpoint.h), which it moves in as shards/: with config.json, the
// tokenizer files and trainer_state.json (last). Returns its path.
std::string save_sharded_checkpoint(const std::string& output_dir, models::Llama& model,
                                    const std::string& tokenizer_source, const std::string& shards_dir,
                                    const std::map<std::string, double>& optimizer_scalars, const TrainerState& state);

// The newest complete checkpoint directory in output_dir/checkpoints, if any.
std::optional<std::string> latest_checkpoint(const std::string& output_dir);
// Deletes all but the newest `keep` complete checkpoints, and the ranks' files of a sharded save a killed run
// left (checkpoints/.step_<N>.shards).
void prune_checkpoints(const std::string& output_dir, int64_t keep);

// optimizer.safetensors + the scalars of `state`, for Optimizer::load_state.
optim::OptimizerState read_optimizer_state(const std::string& checkpoint_dir, const TrainerState& state);

// Writes `dir` as an HF model directory (weights in the model's dtype, tokenizer files) atomically:
// built under a temporary name beside it, then swapped in.
void save_model_dir(models::Llama& model, const std::string& tokenizer_source, const std::string& dir,
                    const WeightsWriter& write_weights = nullptr, const models::TensorReader& read = nullptr);

}  // namespace qtune::recipes
