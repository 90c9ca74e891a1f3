#include "models/sharded_llama.h"

#include <functional>
#include <map>
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

// The state's tensors by name ("exp_avg", ...), one per parameter, and `convert` applied to each list: the
// scalars stay as they are. Fails naming the key for one that is not "state.<i>.<name>" with i < count, and
// for a name some parameter lacks.
optim::OptimizerState regroup(const optim::OptimizerState& state, const std::vector<std::string>& names,
                              const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& convert) {
  const size_t count = names.size();
  std::map<std::string, std::vector<Tensor>> by_name;
  for (const auto& [key, t] : state.tensors) {
    const size_t dot = key.find('.', 6);
    QTUNE_CHECK(key.rfind("state.", 0) == 0 && dot != std::string::npos && dot > 6, "optimizer state ", key,
                ": expected state.<parameter>.<name>");
    const size_t index = std::stoul(key.substr(6, dot - 6));
    QTUNE_CHECK(index < count, "optimizer state ", key, ": the model has ", count, " trainable tensors");
    auto& list = by_name[key.substr(dot + 1)];
    list.resize(count);
    list[index] = t;
  }
  optim::OptimizerState out;
  out.scalars = state.scalars;
  for (const auto& [name, list] : by_name) {
    for (size_t j = 0; j < count; ++j)
      QTUNE_CHECK(list[j].defined(), "optimizer state ", name, " is missing for ", names[j]);
    const std::vector<Tensor> converted = convert(list);
    for (size_t j = 0; j < count; ++j) out.tensors["state." + std::to_string(j) + "." + name] = converted[j];
  }
  return out;
}

}  // namespace

optim::OptimizerState ShardedLlama::consolidate_state(const optim::OptimizerState& pieces) {
  return regroup(pieces, fsdp_->parameter_names(),
                 [this](const std::vector<Tensor>& list) { return fsdp_->gather_pieces(list); });
}

optim::OptimizerState ShardedLlama::shard_state(const optim::OptimizerState& whole) const {
  return regroup(whole, fsdp_->parameter_names(),
                 [this](const std::vector<Tensor>& list) { return fsdp_->shard_whole(list); });
}

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
