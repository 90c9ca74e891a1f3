#include "models/sharded_llama.h"

#include <algorithm>
#include <chrono>
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
    const auto [index, name] = optim::Optimizer::parse_state_key(key, count);
    auto& list = by_name[name];
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

optim::OptimizerState ShardedLlama::shard_state(const optim::OptimizerState& whole) const {
  return regroup(whole, fsdp_->parameter_names(),
                 [this](const std::vector<Tensor>& list) { return fsdp_->shard_whole(list); });
}

void ShardedLlama::consolidate(const optim::OptimizerState& pieces,
                               const std::function<void(const WholeReader&)>& write) {
  dist::Fsdp& fsdp = *fsdp_;
  dist::Communicator& comm = fsdp.communicator();
  // Sorted by key: the same list on every rank.
  const std::vector<std::pair<std::string, Tensor>> state(pieces.tensors.begin(), pieces.tensors.end());
  const auto parameter_of = [&](const std::string& key) {
    return optim::Optimizer::parse_state_key(key, fsdp.parameters().size()).first;
  };
  // Rank 0 broadcasts what every rank gathers next. The others may wait while it writes a file; rank 0 itself
  // waits the collective deadline (a rank that stopped answering ends the job then).
  enum Request : int64_t { kDone, kFailed, kParameter, kState, kBlock };
  const auto exchange = [&](int64_t kind, int64_t index) {
    int64_t message[2] = {kind, index};
    const Tensor buffer = Tensor::from_data(message, {2}, DType::i64, fsdp.device());  // NCCL moves GPU buffers
    const auto work = comm.broadcast(dist::buffer_of(buffer), 0);
    comm.rank() != 0 ? work->wait(std::chrono::hours(2)) : work->wait();
    const std::vector<int64_t> got = buffer.to_vector<int64_t>();
    return std::pair<int64_t, size_t>{got[0], static_cast<size_t>(got[1])};
  };
  const auto serve = [&](int64_t kind, size_t index) -> Tensor {
    if (kind == kParameter) return fsdp.gather_parameter(index, fsdp.parameters()[index]);
    if (kind == kState) return fsdp.gather_parameter(parameter_of(state[index].first), state[index].second);
    fsdp.gather_block(index);  // kBlock: until the next one, or the end
    return {};
  };
  if (comm.rank() != 0) {
    for (;;) {
      const auto [kind, index] = exchange(kDone, 0);
      if (kind == kDone) break;
      if (kind == kFailed) {
        fsdp.release_all();
        QTUNE_FAIL("rank 0 failed while writing the model (its error says why)");
      }
      serve(kind, index);
    }
    fsdp.release_all();
    return;
  }
  const auto request = [&](int64_t kind, size_t index) {
    exchange(kind, static_cast<int64_t>(index));
    return serve(kind, index);
  };
  WholeReader reader;
  reader.weight = [&](const Tensor& t) {
    if (const auto j = fsdp.parameter_index(t)) return request(kParameter, *j);
    if (const auto b = fsdp.block_of(t)) request(kBlock, *b);
    return t;  // gathered now, or one of the root's tensors, whole on every rank
  };
  reader.optimizer_state = [&](const std::string& key) {
    const auto at = std::lower_bound(state.begin(), state.end(), key,
                                     [](const auto& kv, const std::string& k) { return kv.first < k; });
    QTUNE_CHECK(at != state.end() && at->first == key, "optimizer state ", key, ": no such tensor");
    const size_t index = static_cast<size_t>(at - state.begin());
    return io::LazyTensor{{key, at->second.dtype(), fsdp.parameter_shape(parameter_of(key))},
                          [request, index] { return request(kState, index); }};
  };
  try {
    write(reader);
  } catch (const dist::CollectiveError&) {
    throw;  // the communicator is unusable: the others fail on their own deadline, or the job is aborted
  } catch (...) {
    // Outside a collective (a file error): tell the others, within the usual deadline.
    try {
      exchange(kFailed, 0);
    } catch (const std::exception&) {
      // They learn it from the job's abort instead.
    }
    fsdp.release_all();
    throw;
  }
  exchange(kDone, 0);
  fsdp.release_all();
}

ShardedLlama::ShardedLlama(Llama& model, dist::Communicator& comm, dist::FsdpOptions options) : model_(model) {
  auto& base = dynamic_cast<LlamaModel&>(*model.model);
  auto& layers = dynamic_cast<ModuleList&>(*base.layers);
  std::vector<std::pair<std::string, Module*>> blocks;
  for (size_t i = 0; i < layers.size(); ++i) blocks.emplace_back("model.layers." + std::to_string(i), &layers[i]);
  options.unit_of = nf4_unit;
  fsdp_ = std::make_unique<dist::Fsdp>(comm, model, blocks, std::move(options));
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
