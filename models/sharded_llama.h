#pragma once
// A Llama trained with FSDP (dist/fsdp.h, docs/distributed.md): every decoder layer is one sharded unit that
// the forward gathers around its use; NF4 bases are cut on whole double-quantization groups.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "dist/communicator.h"
#include "dist/fsdp.h"
#include "engine/io/safetensors_writer.h"
#include "models/llama.h"
#include "models/tensor_reader.h"
#include "optim/optimizer.h"

namespace qtune::models {

class ShardedLlama {
 public:
  // Shards `model` (built and loaded the same on every rank, passes applied) across comm's ranks; the model
  // keeps only this rank's shard of each layer. Both must outlive this object. options.source: the pieces of
  // the tensors the model was built without (a sharded load, models/sharded_loading.h); options.offload: a GPU
  // model's shards and optimizer state in host memory. NF4 tensors are cut on whole double-quantization groups.
  ShardedLlama(Llama& model, dist::Communicator& comm, dist::FsdpOptions options = {});
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

  // Saving a whole checkpoint from the lead rank (0) without gathering the model (collective; docs/distributed.md,
  // "Checkpoints"): on rank 0 `write` runs with readers of whole tensors, each fetched from every rank when asked
  // for; the other ranks serve those fetches until `write` returns, or fail when it throws. Each rank holds one
  // whole tensor at a time beside its shards (a whole layer for a frozen tensor of one).
  struct WholeReader {
    TensorReader weight;  // a tensor of the model
    // An optimizer tensor ("state.<i>.<name>" of `pieces`) whole, produced when the file writer reaches it.
    std::function<io::LazyTensor(const std::string& key)> optimizer_state;
  };
  void consolidate(const optim::OptimizerState& pieces, const std::function<void(const WholeReader&)>& write);
  // This rank's pieces (over parameters()) of one process's optimizer state over the whole tensors
  // ("state.<i>.<name>"), the checkpoint format at every world size (local).
  optim::OptimizerState shard_state(const optim::OptimizerState& whole) const;
  Llama& model() { return model_; }

 private:
  Llama& model_;
  std::unique_ptr<dist::Fsdp> fsdp_;
};

}  // namespace qtune::models
