#pragma once
// Fully sharded data parallel training (docs/distributed.md, "FSDP"). Each block of a model (a decoder layer)
// is one FlatLayout of its tensors split across the ranks; a rank keeps only its shard and gathers the whole
// block around each use:
//   forward   gather block i (prefetch i + 1), run it, free the whole tensors;
//   backward  gather block i again (prefetch i - 1), run its backward, reduce-scatter its gradients into the
//             rank's pieces, free.
// The root's other tensors (embeddings, the final norm, the head) stay whole on every rank; like every
// trainable tensor they keep only the rank's piece of gradient and optimizer state.
//
// What the optimizer updates are the pieces (parameters()): 1-D leaves, one per trainable tensor, cut on whole
// numerics::kSquaredNormBlock blocks. Reductions run in rank order, so with rank r taking micro-batch r of a
// step, N ranks compute exactly what one process accumulating the same N micro-batches computes: the same
// gradient pieces, the same norm (grad_norm_squares) and, after the optimizer, the same weights.
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "dist/communicator.h"
#include "dist/flat_layout.h"
#include "engine/module.h"
#include "engine/tensor.h"

namespace qtune::dist {

// Elements of a frozen tensor that must stay on one rank together (an NF4 double-quantization group's codes).
using UnitOf = std::function<int64_t(const std::string& name, const Tensor& t)>;
// Writes this rank's piece of a block tensor built without its memory (Tensor::reserved: a sharded load), the
// elements `held` of the flattened tensor, into piece. Asked on every rank for every such tensor in the same
// order, also for an empty range, so it may run collectives.
using PieceSource = std::function<void(const std::string& name, const Tensor& whole, Range held, void* piece)>;

struct FsdpOptions {
  UnitOf unit_of = nullptr;      // 1 for every frozen tensor when null
  PieceSource source = nullptr;  // the pieces of the block tensors that hold no memory (the root's must hold theirs)
  // A GPU model's shards, and so its trainable pieces, their gradients and the optimizer state, stay in host
  // memory: each gather copies the shard up first, each reduction's result comes down (and goes up once more for
  // the gradient norm, measured on the device as one GPU measures it). Nothing on CPU models.
  bool offload = false;
  // Mixed precision: the trainable pieces, and so the optimizer and its state, in master_dtype while the model
  // computes in its own dtype (a gather casts the pieces to it); gradients are summed across ranks in
  // reduce_dtype (default: master_dtype). Trainable tensors only: frozen ones (NF4 parts, a frozen base) move
  // as they are stored. Unset: the model's dtype.
  std::optional<DType> master_dtype = std::nullopt, reduce_dtype = std::nullopt;
};

class Fsdp {
 public:
  // blocks: root's repeated children in forward order, by their names under root. Every rank must pass the same
  // model, all of its tensors on one device. Every tensor of a block (parameters and buffers) is sharded;
  // trainable ones (requires_grad now) must share one floating dtype per block.
  Fsdp(Communicator& comm, Module& root, const std::vector<std::pair<std::string, Module*>>& blocks,
       FsdpOptions options = {});
  ~Fsdp();
  Fsdp(const Fsdp&) = delete;
  Fsdp& operator=(const Fsdp&) = delete;

  Communicator& communicator() const { return comm_; }
  // Where the gathers and reductions run: the model's device (a collective's buffers must be there).
  Device device() const { return device_.value_or(Device::cpu()); }
  // The rank's piece of every trainable tensor of root, in root.trainable_parameters() order: 1-D leaves whose
  // .grad the backward fills. What the optimizer updates.
  const std::vector<Tensor>& parameters() const { return pieces_; }
  // The whole trainable tensors, same order (their values are current only while gathered).
  const std::vector<std::string>& parameter_names() const { return names_; }

  // Bytes this rank keeps between uses: its shards, the pieces' gradients aside, and the root's whole tensors.
  int64_t held_bytes() const;

  // Block i's forward run(h), with its tensors gathered. In grad mode it records what backward needs: the
  // re-gather before the block's backward and the reduce-scatter of its gradients after it.
  Tensor run_block(size_t i, const Tensor& h, const std::function<Tensor(const Tensor&)>& run);

  // After a step's backward passes: the root's gradients reduce-scattered into their pieces. Every rank calls it.
  void finish_backward();
  // [k] f64: each trainable tensor's squared gradient norm, as squared_norm of the whole gradient gives it on one
  // process, in parameters() order (collective). Tensors without a gradient give 0.
  Tensor grad_norm_squares();
  // After the optimizer updated the pieces: the root's whole trainable tensors refreshed from them.
  void after_step();

  // Whole tensors: gather_all() gathers every block and keeps it until release_all() (both collective); the
  // model then reads as an unsharded one (to save it). materialize() gathers for good and gives the trainable
  // tensors back their requires_grad: the model is a plain model again and this object must not run anything.
  void gather_all();
  void release_all();
  void materialize();

  // One whole tensor at a time, for saving with a layer's memory at most (collective, every rank asking for
  // the same in the same order). parameter_index / block_of find a tensor of root (by identity); gather_parameter
  // rebuilds trainable tensor j from the ranks' pieces shaped like parameters()[j] (its current value, or its
  // optimizer state: any dtype); gather_block keeps block b (a units index, from block_of) gathered and
  // releases any other block gather_block kept.
  std::optional<size_t> parameter_index(const Tensor& whole) const;
  std::optional<size_t> block_of(const Tensor& whole) const;
  Tensor gather_parameter(size_t j, const Tensor& piece);
  Shape parameter_shape(size_t j) const;
  void gather_block(size_t b);

  // Whole tensors from pieces shaped like parameters() (optimizer state: any dtype), in the same order
  // (collective), and back: this rank's pieces of whole tensors shaped like the trainable ones (local).
  std::vector<Tensor> gather_pieces(const std::vector<Tensor>& pieces);
  std::vector<Tensor> shard_whole(const std::vector<Tensor>& whole) const;

 private:
  struct Entry {
    std::string name;
    Tensor whole;
    int64_t param_index = -1;  // into pieces_ when trainable
  };
  struct Unit;
  void start_gather(Unit& u);
  void finish_gather(Unit& u);
  void ensure_gathered(Unit& u);
  void release(Unit& u);
  void reduce_gradients(Unit& u, const std::vector<Tensor>& grads);  // whole grads of u's trainable entries
  void set_trainable_whole(Unit& u, bool on);

  Communicator& comm_;
  std::vector<std::unique_ptr<Unit>> units_;  // units_[0] is the root, then one per block
  std::vector<Tensor> pieces_;
  std::vector<Tensor> root_whole_;  // the root's own tensors, whole on every rank
  std::vector<std::string> names_;
  std::vector<std::pair<size_t, size_t>> where_;  // parameter index -> (unit, trainable entry)
  bool materialized_ = false;
  std::optional<Device> device_;  // of every sharded tensor: gathers and reductions run there
  Device shard_device_;           // device_, or the host with offload
};

}  // namespace qtune::dist
