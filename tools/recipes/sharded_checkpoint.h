#pragma once
// dist.sharded_checkpoints (docs/distributed.md, "Checkpoints"): an FSDP checkpoint whose trainable tensors and
// optimizer state stay cut as the ranks hold them, every rank writing its own file at once. Beside config.json,
// the tokenizer and trainer_state.json, checkpoints/step_<N>/ then holds
//   shards/rank_<r>.safetensors  rank r's piece of every trainable tensor (under its model name) and of every
//                                optimizer tensor ("state.<i>.<name>"), 1-D, padding included;
//   shards/index.json            {"ranks": N, "tensors": {name: {"dtype", "shape" (whole), "piece"}}}.
// Rank r's piece of a tensor is its flattened elements [r * piece, (r + 1) * piece), so a run of any world size,
// one process included, reads its own elements from whichever files hold them.
#include <map>
#include <string>
#include <vector>

#include "engine/shape.h"
#include "engine/tensor.h"
#include "models/sharded_llama.h"
#include "optim/optimizer.h"

namespace qtune::recipes {

// Every rank: its file in `shards_dir` (which must exist), from its pieces of the parameters and the optimizer.
void write_rank_shard(const std::string& shards_dir, models::ShardedLlama& model, const optim::OptimizerState& pieces,
                      int rank);
// Rank 0, once every rank's file is in `shards_dir`: the index.
void write_shard_index(const std::string& shards_dir, models::ShardedLlama& model, const optim::OptimizerState& pieces,
                       int ranks);

// Whether the checkpoint directory holds sharded state (shards/index.json) rather than whole files.
bool has_sharded_state(const std::string& checkpoint_dir);

// Fills `params`, the trainable tensors `names` (whole, shaped `shapes`) as this run cuts them: rank r of a
// sharded run holds elements [r * n, (r + 1) * n) of each in a 1-D piece of n, one process the whole tensor
// (rank 0, n = its size). Returns the optimizer state cut the same way, with `scalars`. Throws naming the
// file and tensor for a missing or mis-shaped one.
optim::OptimizerState read_sharded_state(const std::string& checkpoint_dir, const std::vector<std::string>& names,
                                         const std::vector<Shape>& shapes, const std::vector<Tensor>& params, int rank,
                                         const std::map<std::string, double>& scalars);

}  // namespace qtune::recipes
