#pragma once
// The pieces of a run, built from its config: tokenizer, model, data loaders, optimizer.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "data/data_loader.h"
#include "data/tokenizer.h"
#include "models/llama.h"
#include "optim/optimizer.h"
#include "tools/recipes/run_config.h"

namespace qtune::recipes {

// model.tokenizer, or the model directory (what data::load_tokenizer reads).
std::string tokenizer_source(const RunConfig& config);

// Llama options of the run: model.dtype, device, train.seed, train.activation_checkpointing.
models::LlamaOptions model_options(const RunConfig& config);
// An untrained model with the config.json of `dir` (an HF model directory or a checkpoint), its
// parameters left uninitialized for models::load_llama_weights.
std::shared_ptr<models::Llama> model_skeleton(const std::string& dir, const RunConfig& config);
// The model a fresh run starts from: model.config initialized from train.seed, or model.path's weights
// (recipe qlora, or lora with fp8.recipe, on CPU: the frozen decoder projections stored in NF4 / e4m3 as
// they are read).
std::shared_ptr<models::Llama> initial_model(const RunConfig& config);
// Under FSDP, the model of a sharded load from `dir` (model.path, or a whole-model checkpoint being resumed):
// its decoder projections reserved, for models::checkpoint_pieces to fill each rank's pieces (docs/distributed.md,
// "Loading"). Null where the run's base is not built that way (fp8's e4m3 base, a GPU): load it whole, then shard.
std::shared_ptr<models::Llama> reserved_model(const RunConfig& config, const std::string& dir);

// Batches of `path` in data.format (text | jsonl | tokens), token ids checked against `vocab_size`.
// `note` receives remarks for the user (lines skipped with data.skip_bad_lines).
data::DataLoader make_loader(const RunConfig& config, const std::string& path, const data::Tokenizer& tokenizer,
                             int64_t vocab_size, const std::function<void(const std::string&)>& note);

// optim.name over `params`, with the section's hyperparameters.
std::unique_ptr<optim::Optimizer> make_optimizer(const OptimSection& options, std::vector<Tensor> params);

}  // namespace qtune::recipes
