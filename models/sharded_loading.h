#pragma once
// Loading a model straight into FSDP's shards (docs/distributed.md, "Loading"): the model is built with its
// decoder projections reserved (load_llama_reserved), and ShardedLlama fills each rank's pieces through
// checkpoint_pieces, which reads only those elements of the mapped files. A rank never holds more of a
// projection than its piece, so its peak is its shard of the model plus the root's whole tensors.
#include <string>

#include "dist/communicator.h"
#include "dist/fsdp.h"
#include "engine/dtype.h"

namespace qtune::models {

// The pieces of the reserved tensors from the checkpoint in `dir`, converted to their dtypes. An NF4 weight's
// parts ("<fqn>.nf4_codes", "nf4_scalers", "nf4_factors", "nf4_mean") are quantized from the rank's whole
// double-quantization groups of "<fqn>.weight", read in `dtype` (the model's compute dtype), against the
// mean of every rank's block absmaxes (an all_gather): the codes one process would have made, bit for bit.
dist::PieceSource checkpoint_pieces(const std::string& dir, dist::Communicator& comm, DType dtype);

}  // namespace qtune::models
