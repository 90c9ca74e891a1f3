#pragma once
// A Llama trained with FSDP (dist/fsdp.h, docs/distributed.md): every decoder layer is one sharded unit that
// the forward gathers around its use; NF4 bases are cut on whole double-quantization groups.
#include <memory>
#include <vector>

#include "dist/communicator.h"
#include "dist/fsdp.h"
#include "models/llama.h"
#include "optim/optimizer.h"

namespace qtune::models {

class ShardedLlama {
 public:
  // Shards `model` (built and loaded the same on every rank, passes applied) across comm's ranks; the model
  // keeps only this rank's shard of each layer. Both must outlive this object.
  ShardedLlama(Llama& model, dist::Communicator& comm);
  // Takes the layer runner back out of the model (whose layers stay as sharded as they are then).
  ~ShardedLlama();
  ShardedLlama(const ShardedLlama&) = delete;
  ShardedLlama& operator=(const ShardedLlama&) = delete;

  dist::Fsdp& fsdp() { return *fsdp_; }
  // What the optimizer updates: this rank's pieces of the trainable tensors (dist::Fsdp::parameters()).
  const std::vector<Tensor>& parameters() const { return fsdp_->parameters(); }

  // After the step's backward passes (collective): the gradients reduced into the pieces, their global norm
  // measured and, when above max_norm > 0, the pieces' gradients scaled as optim::clip_grad_norm scales whole
  // ones. Returns every trainable tensor's squared gradient norm, [k] f64 in model order (the norm of one
  // process accumulating the ranks' micro-batches, bit for bit).
  Tensor finish_gradients(double max_norm);

  // An optimizer's state over parameters() ("state.<i>.<name>", pieces) as one process's over the whole tensors,
  // the checkpoint format at every world size (collective); and back, this rank's pieces of it (local).
  optim::OptimizerState consolidate_state(const optim::OptimizerState& pieces);
  optim::OptimizerState shard_state(const optim::OptimizerState& whole) const;
  Llama& model() { return model_; }

 private:
  Llama& model_;
  std::unique_ptr<dist::Fsdp> fsdp_;
};

}  // namespace qtune::models
