#include "models/sharded_llama.h"

#include <string>
#include <utility>
#include <vector>

#include "engine/backend.h"
#include "engine/numerics/nf4.h"

namespace qtune::models {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// FrozenNF4Linear's buffers per double-quantization group (numerics::kNF4ScalerBlockSize blocks of
// kNF4BlockSize weights): a rank's shard of them decodes on its own.
int64_t nf4_unit(const std::string& name, const Tensor&) {
  constexpr int64_t group_weights = numerics::kNF4BlockSize * numerics::kNF4ScalerBlockSize;
  if (ends_with(name, ".nf4_codes")) return group_weights / 2;  // two 4-bit codes per byte
  if (ends_with(name, ".nf4_scalers")) return numerics::kNF4ScalerBlockSize;
  return 1;
}

}  // namespace

ShardedLlama::ShardedLlama(Llama& model, dist::Communicator& comm) : model_(model) {
  auto& base = dynamic_cast<LlamaModel&>(*model.model);
  auto& layers = dynamic_cast<ModuleList&>(*base.layers);
  std::vector<std::pair<std::string, Module*>> blocks;
  for (size_t i = 0; i < layers.size(); ++i) blocks.emplace_back("model.layers." + std::to_string(i), &layers[i]);
  fsdp_ = std::make_unique<dist::Fsdp>(comm, model, blocks, nf4_unit);
  dist::Fsdp* fsdp = fsdp_.get();
  base.set_layer_runner(
      [fsdp](size_t i, const Tensor& h, const LlamaModel::LayerFn& run) { return fsdp->run_block(i, h, run); });
}

Tensor ShardedLlama::finish_gradients(double max_norm) {
  fsdp_->finish_backward();
  const Tensor squares = fsdp_->grad_norm_squares();
  for (const Tensor& p : fsdp_->parameters())
    if (p.grad().defined()) backend_for(p.device()).clip_by_norm(squares, max_norm, p.grad());
  return squares;
}

ShardedLlama::~ShardedLlama() { dynamic_cast<LlamaModel&>(*model_.model).set_layer_runner(nullptr); }

}  // namespace qtune::models
