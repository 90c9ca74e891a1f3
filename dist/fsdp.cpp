#include "dist/fsdp.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/numerics/clip.h"
#include "engine/storage.h"

namespace qtune::dist {

struct Fsdp::Unit {
  std::string name;  // "" for the root
  std::vector<Entry> trainable, frozen;
  std::optional<FlatLayout> train, fixed;
  DType train_dtype = DType::f32;   // of the whole trainable tensors: the model computes in it
  DType master_dtype = DType::f32;  // of the pieces (FsdpOptions::master_dtype, else train_dtype)
  DType reduce_dtype = DType::f32;  // gradients are summed across ranks in it
  // The trainable tensors laid out in each of those dtypes: the shard the pieces view (train), what a gather
  // moves (wire), what a reduction moves (reduce). Equal dtypes, equal layouts.
  std::optional<FlatLayout> wire, reduce;
  Tensor train_shard;  // [train->shard_bytes() / element size] of master_dtype; the pieces are views of it
  Tensor fixed_shard;  // u8 [fixed->shard_bytes()]
  enum class State { released, pending, gathered } state = State::gathered;
  Tensor train_gathered, fixed_gathered;
  Tensor train_sent, fixed_sent;  // an offloaded shard's copy on the device, until its gather completes
  std::unique_ptr<Work> train_work, fixed_work;
  bool keep = false;      // gather_all(): stay gathered
  bool in_graph = false;  // its backward hooks are recorded and have not run yet
};

namespace {

// `count` elements of `dtype` starting `byte_offset` bytes into contiguous `buffer` (any device): a piece of
// a flat shard, or of the shards of every rank laid end to end. Pieces start on 16-byte boundaries, so the
// offset is a whole number of elements.
Tensor typed_view(const Tensor& buffer, int64_t byte_offset, int64_t count, DType dtype) {
  const auto size = static_cast<int64_t>(dtype_size(dtype));
  const int64_t start = buffer.offset() * static_cast<int64_t>(dtype_size(buffer.dtype())) + byte_offset;
  QTUNE_CHECK(start % size == 0, "FSDP: a ", dtype_name(dtype), " piece at byte ", start, " is misaligned");
  return Tensor::from_storage(buffer.storage(), {count}, {1}, start / size, dtype);
}

Tensor flat(const Tensor& t) { return t.view({t.numel()}); }

// `layout`'s segments in `dtype`: the same pieces, their offsets for that element size.
FlatLayout retyped(const FlatLayout& layout, DType dtype) {
  std::vector<Segment> segments = layout.segments();
  for (Segment& s : segments) s.dtype = dtype;
  return FlatLayout(std::move(segments), layout.ranks());
}

// One rank's shard converted from `from`'s layout and dtype to `to`'s (padding included), on `device`.
Tensor convert_shard(const FlatLayout& from, const Tensor& shard, const FlatLayout& to, DType dtype, Device device) {
  NoGradGuard no_grad;
  const Tensor out = Tensor::zeros({to.shard_bytes() / static_cast<int64_t>(dtype_size(dtype))}, dtype, device);
  for (size_t s = 0; s < from.segments().size(); ++s)
    typed_view(out, to.piece_offset(s), to.piece_count(s), dtype)
        .copy_(typed_view(shard, from.piece_offset(s), from.piece_count(s), shard.dtype()));
  return out;
}

// The whole tensors of `entries` rebuilt from every rank's shard, laid end to end in `gathered` (on their device).
void unpack(const FlatLayout& layout, const Tensor& gathered, const std::vector<Tensor>& wholes) {
  NoGradGuard no_grad;
  for (int r = 0; r < layout.ranks(); ++r) {
    for (size_t s = 0; s < wholes.size(); ++s) {
      const Range held = layout.held(r, s);
      if (held.size() == 0) continue;
      flat(wholes[s])
          .narrow(0, held.begin, held.size())
          .copy_(
              typed_view(gathered, r * layout.shard_bytes() + layout.piece_offset(s), held.size(), wholes[s].dtype()));
    }
  }
}

}  // namespace

Fsdp::Fsdp(Communicator& comm, Module& root, const std::vector<std::pair<std::string, Module*>>& blocks,
           FsdpOptions options)
    : comm_(comm) {
  const UnitOf& unit_of = options.unit_of;
  const PieceSource& source = options.source;
  const int ranks = comm.size();
  for (const Tensor& t : root.parameters()) {
    if (!t.defined()) continue;
    device_ = t.device();
    break;
  }
  // Which unit (0 = root) and position each tensor of the model belongs to.
  std::unordered_map<const TensorImpl*, size_t> unit_of_impl;
  units_.push_back(std::make_unique<Unit>());
  for (const auto& [block_name, block] : blocks) {
    auto unit = std::make_unique<Unit>();
    unit->name = block_name;
    std::vector<std::pair<std::string, Tensor>> tensors = block->named_parameters(block_name);
    for (auto& b : block->named_buffers(block_name)) tensors.push_back(std::move(b));
    for (auto& [name, t] : tensors) {
      if (!t.defined()) continue;
      const auto [it, fresh] = unit_of_impl.try_emplace(t.impl(), units_.size());
      if (!fresh) {
        QTUNE_CHECK(it->second == units_.size(), "FSDP: ", name,
                    " is shared with another block; blocks must own their tensors");
        continue;
      }
      if (!device_) device_ = t.device();
      QTUNE_CHECK(t.device() == *device_, "FSDP: ", name, " is on ", t.device().str(), ", the model's first tensor on ",
                  device_->str(), ": move the model to one device first");
      // Its own contiguous storage, so that freeing it between uses frees exactly this tensor (a reserved one
      // has it already).
      if (t.storage()->has_data()) {
        t.set_data(t.detach().clone());
      } else {
        QTUNE_CHECK(source && t.is_contiguous() && t.storage()->nbytes() == t.nbytes(), "FSDP: ", name,
                    " holds no memory, and nothing loads its piece (a model built without its weights is sharded "
                    "with a piece source)");
      }
      if (t.requires_grad()) {
        QTUNE_CHECK(is_floating(t.dtype()), "FSDP: trainable ", name, " is ", dtype_name(t.dtype()));
        QTUNE_CHECK(unit->trainable.empty() || t.dtype() == unit->train_dtype, "FSDP: ", block_name,
                    " mixes trainable dtypes (", unit->trainable.front().name, " is ", dtype_name(unit->train_dtype),
                    ", ", name, " is ", dtype_name(t.dtype()), "); cast the model to one dtype first");
        unit->train_dtype = t.dtype();
        unit->trainable.push_back({name, t, -1});
      } else {
        unit->frozen.push_back({name, t, -1});
      }
    }
    units_.push_back(std::move(unit));
  }

  for (auto named : {root.named_parameters(), root.named_buffers()}) {
    for (auto& [name, t] : named) {
      if (!t.defined() || unit_of_impl.count(t.impl())) continue;
      QTUNE_CHECK(t.storage()->has_data(), "FSDP: ", name, " stays whole on every rank but holds no memory");
      QTUNE_CHECK(!device_ || t.device() == *device_, "FSDP: ", name, " is on ", t.device().str(), ", the model on ",
                  device_->str(), ": move the model to one device first");
      root_whole_.push_back(t);
    }
  }

  // Parameter order is the model's: a sharded optimizer's state lines up with a one-process one.
  Unit& root_unit = *units_[0];
  for (auto& [name, t] : root.named_parameters()) {
    const auto it = unit_of_impl.find(t.impl());
    const size_t u = it == unit_of_impl.end() ? 0 : it->second;
    if (u == 0) {
      if (!t.requires_grad()) continue;  // frozen root tensors stay whole and are never reduced
      QTUNE_CHECK(root_unit.trainable.empty() || t.dtype() == root_unit.train_dtype,
                  "FSDP: the root mixes trainable dtypes (", root_unit.trainable.front().name, " is ",
                  dtype_name(root_unit.train_dtype), ", ", name, " is ", dtype_name(t.dtype()), ")");
      root_unit.train_dtype = t.dtype();
      root_unit.trainable.push_back({name, t, -1});
    }
    Unit& unit = *units_[u];
    for (size_t k = 0; k < unit.trainable.size(); ++k) {
      if (!unit.trainable[k].whole.is_same(t)) continue;
      unit.trainable[k].param_index = static_cast<int64_t>(names_.size());
      names_.push_back(name);
      where_.emplace_back(u, k);
    }
  }

  // A piece comes from the whole tensor (through host memory from a GPU), or from the source for one that
  // holds no memory.
  const auto fill_from = [&](const std::vector<Entry>& entries) {
    return [&entries, &source](size_t s, Range held, void* piece) {
      const Tensor& whole = entries[s].whole;
      if (!whole.storage()->has_data()) return source(entries[s].name, whole, held, piece);
      if (held.size() == 0) return;
      const Tensor part = flat(whole).narrow(0, held.begin, held.size()).to(Device::cpu());
      std::memcpy(piece, part.data_ptr(), part.nbytes());
    };
  };
  // A shard is filled in host memory, then moved to the model's device unless offloaded.
  shard_device_ = options.offload ? Device::cpu() : device_.value_or(Device::cpu());
  const auto shard_of = [&](const FlatLayout& layout, const std::vector<Entry>& entries, DType dtype) {
    const int64_t size = static_cast<int64_t>(dtype_size(dtype));
    Tensor shard = Tensor::empty({layout.shard_bytes() / size}, dtype);
    layout.fill_shard(comm.rank(), fill_from(entries), shard.data_ptr());
    return shard.to(shard_device_);
  };
  pieces_.resize(names_.size());
  for (size_t u = 0; u < units_.size(); ++u) {
    Unit& unit = *units_[u];
    for (const Entry& e : unit.trainable)
      QTUNE_CHECK(e.param_index >= 0, "FSDP: trainable ", e.name, " is not among the model's parameters");
    if (!unit.trainable.empty()) {
      unit.master_dtype = options.master_dtype.value_or(unit.train_dtype);
      unit.reduce_dtype = options.reduce_dtype.value_or(unit.master_dtype);
      for (const DType d : {unit.master_dtype, unit.reduce_dtype})
        QTUNE_CHECK(is_floating(d), "FSDP mixed precision: ", dtype_name(d), " is not a floating dtype");
      std::vector<Segment> segments;
      for (const Entry& e : unit.trainable)
        segments.push_back({e.name, unit.train_dtype, e.whole.numel(), numerics::kSquaredNormBlock});
      unit.wire.emplace(std::move(segments), ranks);
      unit.train.emplace(retyped(*unit.wire, unit.master_dtype));
      unit.reduce.emplace(retyped(*unit.wire, unit.reduce_dtype));
      const int64_t size = static_cast<int64_t>(dtype_size(unit.master_dtype));
      // Filled in the model's dtype, then widened (or narrowed) to the masters'.
      unit.train_shard = shard_of(*unit.wire, unit.trainable, unit.train_dtype);
      if (unit.master_dtype != unit.train_dtype)
        unit.train_shard = convert_shard(*unit.wire, unit.train_shard, *unit.train, unit.master_dtype, shard_device_);
      for (size_t s = 0; s < unit.trainable.size(); ++s) {
        Tensor piece = unit.train_shard.narrow(0, unit.train->piece_offset(s) / size, unit.train->piece_count(s));
        piece.requires_grad_(true);
        pieces_[static_cast<size_t>(unit.trainable[s].param_index)] = piece;
      }
    }
    if (!unit.frozen.empty()) {
      std::vector<Segment> segments;
      for (const Entry& e : unit.frozen)
        segments.push_back({e.name, e.whole.dtype(), e.whole.numel(), unit_of ? unit_of(e.name, e.whole) : 1});
      unit.fixed.emplace(std::move(segments), ranks);
      unit.fixed_shard = shard_of(*unit.fixed, unit.frozen, DType::u8);
    }
    if (u > 0) {
      set_trainable_whole(unit, false);
      release(unit);
    }
  }
}

Fsdp::~Fsdp() = default;

int64_t Fsdp::held_bytes() const {
  int64_t total = 0;
  for (const auto& unit : units_) {
    if (unit->train) total += unit->train->shard_bytes();
    if (unit->fixed) total += unit->fixed->shard_bytes();
  }
  // The root keeps its whole tensors (frozen ones too) besides the pieces of the trainable ones.
  for (const Tensor& t : root_whole_) total += static_cast<int64_t>(t.nbytes());
  return total;
}

void Fsdp::set_trainable_whole(Unit& u, bool on) {
  for (Entry& e : u.trainable) {
    TensorImpl* impl = e.whole.impl();
    impl->grad_fn.reset();
    impl->output_nr = 0;
    impl->requires_grad = on;
  }
}

void Fsdp::start_gather(Unit& u) {
  if (u.state != Unit::State::released) return;
  const Device device = device_.value_or(Device::cpu());
  const auto gather = [&](const Tensor& shard, Tensor& sent, Tensor& gathered) {
    sent = shard.to(device);  // the shard itself unless offloaded
    gathered = Tensor::empty({shard.numel() * comm_.size()}, shard.dtype(), device);
    return comm_.all_gather(buffer_of(sent), buffer_of(gathered));
  };
  if (u.train) {
    const Tensor wire = u.master_dtype == u.train_dtype
                            ? u.train_shard
                            : convert_shard(*u.train, u.train_shard, *u.wire, u.train_dtype, u.train_shard.device());
    u.train_work = gather(wire, u.train_sent, u.train_gathered);
  }
  if (u.fixed) u.fixed_work = gather(u.fixed_shard, u.fixed_sent, u.fixed_gathered);
  u.state = Unit::State::pending;
}

void Fsdp::finish_gather(Unit& u) {
  if (u.state != Unit::State::pending) return;
  const auto finish = [](const FlatLayout& layout, std::unique_ptr<Work>& work, Tensor& sent, Tensor& gathered,
                         const std::vector<Entry>& entries) {
    work->wait();
    work.reset();
    sent = Tensor();
    std::vector<Tensor> wholes;
    for (const Entry& e : entries) {
      e.whole.storage()->reallocate();
      wholes.push_back(e.whole);
    }
    unpack(layout, gathered, wholes);
    gathered = Tensor();
  };
  if (u.train) finish(*u.wire, u.train_work, u.train_sent, u.train_gathered, u.trainable);
  if (u.fixed) finish(*u.fixed, u.fixed_work, u.fixed_sent, u.fixed_gathered, u.frozen);
  u.state = Unit::State::gathered;
}

void Fsdp::ensure_gathered(Unit& u) {
  start_gather(u);
  finish_gather(u);
}

void Fsdp::release(Unit& u) {
  finish_gather(u);
  for (const std::vector<Entry>* entries : {&u.trainable, &u.frozen})
    for (const Entry& e : *entries) e.whole.storage()->free_data();
  u.state = Unit::State::released;
}

Tensor Fsdp::run_block(size_t i, const Tensor& h, const std::function<Tensor(const Tensor&)>& run) {
  QTUNE_CHECK(!materialized_, "FSDP: run_block after materialize()");
  QTUNE_CHECK(i + 1 < units_.size(), "FSDP: block ", i, " of ", units_.size() - 1);
  const size_t ui = i + 1;
  Unit& u = *units_[ui];
  // Activation checkpointing runs the block again inside backward: keep it gathered for the backward that
  // follows, and prefetch nothing ahead.
  const bool recomputing = autograd::backward_running();
  ensure_gathered(u);
  if (!recomputing && ui + 1 < units_.size()) start_gather(*units_[ui + 1]);
  const bool record = autograd::grad_enabled() && (h.requires_grad() || !u.trainable.empty());
  if (!record) {
    Tensor y = run(h);
    if (!u.keep) release(u);
    return y;
  }

  // The block reads its trainable tensors as outputs of one node: its backward gets all their gradients at once,
  // after every use of them in the block, and reduce-scatters them.
  const bool has_h = h.requires_grad();
  const Tensor h_in = has_h ? h.detach() : h;
  std::vector<Tensor> outputs;
  if (has_h) outputs.push_back(h_in);
  for (const Entry& e : u.trainable) outputs.push_back(e.whole);
  autograd::record("fsdp_block_input", {h}, outputs, [this, ui, has_h](const std::vector<Tensor>& grads) {
    Unit& unit = *units_[ui];
    reduce_gradients(unit, std::vector<Tensor>(grads.begin() + (has_h ? 1 : 0), grads.end()));
    unit.in_graph = false;
    if (!unit.keep) release(unit);
    return std::vector<Tensor>{has_h ? grads[0] : Tensor()};
  });
  Tensor y;
  try {
    y = run(h_in);
  } catch (...) {
    set_trainable_whole(u, false);
    throw;
  }
  set_trainable_whole(u, false);
  if (!y.requires_grad()) {  // nothing of the block reaches a loss: no backward will come for it
    if (!u.keep) release(u);
    return y;
  }
  u.in_graph = true;
  // Before the block's backward: gather it again, and start on the block before it.
  const Tensor y_out = y.detach();
  autograd::record("fsdp_block_output", {y}, {y_out}, [this, ui](const std::vector<Tensor>& grads) {
    ensure_gathered(*units_[ui]);
    if (ui > 1 && units_[ui - 1]->in_graph) start_gather(*units_[ui - 1]);
    return grads;
  });
  // The last block's backward comes first: it stays gathered.
  if (!u.keep && !recomputing && ui + 1 < units_.size()) release(u);
  return y_out;
}

void Fsdp::reduce_gradients(Unit& u, const std::vector<Tensor>& grads) {
  if (!u.train) return;
  QTUNE_CHECK(grads.size() == u.trainable.size(), "FSDP: ", grads.size(), " gradients for ", u.trainable.size(),
              " trainable tensors of ", u.name.empty() ? "the root" : u.name);
  std::vector<Tensor> contiguous;
  for (size_t s = 0; s < grads.size(); ++s) {
    const Tensor& whole = u.trainable[s].whole;
    contiguous.push_back(grads[s].defined() ? grads[s].to(u.train_dtype).contiguous()
                                            : Tensor::zeros(whole.shape(), u.train_dtype, whole.device()));
  }
  // Every rank's shard of the gradients in reduce_dtype, laid end to end (padding zero), on the model's device.
  const FlatLayout& layout = *u.reduce;
  const DType dtype = u.reduce_dtype;
  const int64_t shard = layout.shard_bytes() / static_cast<int64_t>(dtype_size(dtype));
  const Device device = device_.value_or(Device::cpu());
  const Tensor send = Tensor::zeros({shard * comm_.size()}, dtype, device);
  {
    NoGradGuard no_grad;
    for (int r = 0; r < comm_.size(); ++r) {
      for (size_t s = 0; s < contiguous.size(); ++s) {
        const Range held = layout.held(r, s);
        if (held.size() == 0) continue;
        typed_view(send, r * layout.shard_bytes() + layout.piece_offset(s), held.size(), dtype)
            .copy_(flat(contiguous[s]).narrow(0, held.begin, held.size()));
      }
    }
  }
  const Tensor recv = Tensor::empty({shard}, dtype, device);
  comm_.reduce_scatter(buffer_of(send), buffer_of(recv), Reduce::sum)->wait();
  const Tensor reduced = recv.to(shard_device_);
  for (size_t s = 0; s < u.trainable.size(); ++s) {
    const Tensor& piece = pieces_[static_cast<size_t>(u.trainable[s].param_index)];
    const Tensor g = typed_view(reduced, layout.piece_offset(s), layout.piece_count(s), dtype).to(u.master_dtype);
    const Tensor existing = piece.grad();
    if (existing.defined()) {
      backend_for(existing.device()).binary(BinaryOp::add, existing, g, existing);
    } else {
      piece.set_grad(g);
    }
  }
}

void Fsdp::finish_backward() {
  Unit& root = *units_[0];
  std::vector<Tensor> grads;
  for (const Entry& e : root.trainable) grads.push_back(e.whole.grad());
  reduce_gradients(root, grads);
  for (const Entry& e : root.trainable) e.whole.zero_grad();
}

Tensor Fsdp::grad_norm_squares() {
  const int64_t block = numerics::kSquaredNormBlock;
  // This rank's block sums of every piece, one after another: the same count on every rank.
  std::vector<int64_t> first(pieces_.size() + 1, 0);
  for (size_t j = 0; j < pieces_.size(); ++j) first[j + 1] = first[j] + pieces_[j].numel() / block;
  const Device device = device_.value_or(Device::cpu());
  // On the model's device also when offloaded: the block sums are then the ones a single GPU computes.
  const Tensor local = Tensor::zeros({first.back()}, DType::f64, device);
  for (size_t j = 0; j < pieces_.size(); ++j) {
    const Tensor g = pieces_[j].grad();
    if (!g.defined() || first[j + 1] == first[j]) continue;
    backend_for(device).squared_norm_blocks(g.to(device), local.narrow(0, first[j], first[j + 1] - first[j]));
  }
  const Tensor& sent = local;
  const Tensor gathered = Tensor::empty({first.back() * comm_.size()}, DType::f64, device);
  comm_.all_gather(buffer_of(sent), buffer_of(gathered))->wait();
  // A whole tensor's blocks are rank 0's blocks of it, then rank 1's...: summed in that order (on the host), as
  // squared_norm sums them.
  const Tensor all = gathered.to(Device::cpu());
  const double* sums = all.data<double>();
  Tensor squares = Tensor::zeros({static_cast<int64_t>(pieces_.size())}, DType::f64);
  double* out = squares.data<double>();
  for (size_t j = 0; j < pieces_.size(); ++j) {
    const auto [u, k] = where_[j];
    const int64_t blocks = (units_[u]->trainable[k].whole.numel() + block - 1) / block;
    const int64_t per_rank = first[j + 1] - first[j];
    double total = 0.0;
    for (int64_t b = 0; b < blocks; ++b) total += sums[(b / per_rank) * first.back() + first[j] + b % per_rank];
    out[j] = total;
  }
  return squares.to(shard_device_);
}

void Fsdp::after_step() {
  Unit& root = *units_[0];
  if (root.train) {
    root.state = Unit::State::released;  // the whole tensors stay allocated; reallocate() keeps them
    start_gather(root);
    finish_gather(root);
  }
  for (size_t u = 1; u < units_.size(); ++u) {
    Unit& unit = *units_[u];
    if (unit.state == Unit::State::released) continue;
    release(unit);  // stale: its pieces changed
    if (unit.keep) ensure_gathered(unit);
  }
}

void Fsdp::gather_all() {
  for (size_t u = 1; u < units_.size(); ++u) start_gather(*units_[u]);
  for (size_t u = 1; u < units_.size(); ++u) {
    finish_gather(*units_[u]);
    units_[u]->keep = true;
  }
}

void Fsdp::release_all() {
  for (size_t u = 1; u < units_.size(); ++u) {
    units_[u]->keep = false;
    release(*units_[u]);
  }
}

void Fsdp::materialize() {
  if (materialized_) return;
  gather_all();
  for (size_t u = 1; u < units_.size(); ++u) set_trainable_whole(*units_[u], true);
  materialized_ = true;
}

std::optional<size_t> Fsdp::parameter_index(const Tensor& whole) const {
  for (size_t j = 0; j < where_.size(); ++j)
    if (units_[where_[j].first]->trainable[where_[j].second].whole.impl() == whole.impl()) return j;
  return std::nullopt;
}

std::optional<size_t> Fsdp::block_of(const Tensor& whole) const {
  for (size_t u = 1; u < units_.size(); ++u)
    for (const std::vector<Entry>* entries : {&units_[u]->trainable, &units_[u]->frozen})
      for (const Entry& e : *entries)
        if (e.whole.impl() == whole.impl()) return u;
  return std::nullopt;
}

Tensor Fsdp::gather_parameter(size_t j, const Tensor& piece) {
  QTUNE_CHECK(j < pieces_.size(), "FSDP gather_parameter: tensor ", j, " of ", pieces_.size());
  QTUNE_CHECK(piece.numel() == pieces_[j].numel(), "FSDP gather_parameter: the piece of ", names_[j], " has ",
              piece.numel(), " elements, expected ", pieces_[j].numel());
  // Every rank's piece has the same length and rank r's follows rank r - 1's (FlatLayout::held): the
  // gathered pieces are the whole tensor, then padding.
  const Tensor& whole = units_[where_[j].first]->trainable[where_[j].second].whole;
  const Device device = device_.value_or(Device::cpu());
  const Tensor send = piece.contiguous().view({piece.numel()}).to(device);
  const Tensor gathered = Tensor::empty({piece.numel() * comm_.size()}, piece.dtype(), device);
  comm_.all_gather(buffer_of(send), buffer_of(gathered))->wait();
  return gathered.narrow(0, 0, whole.numel()).view(whole.shape());
}

Shape Fsdp::parameter_shape(size_t j) const {
  QTUNE_CHECK(j < pieces_.size(), "FSDP parameter_shape: tensor ", j, " of ", pieces_.size());
  return units_[where_[j].first]->trainable[where_[j].second].whole.shape();
}

void Fsdp::gather_block(size_t b) {
  QTUNE_CHECK(b >= 1 && b < units_.size(), "FSDP gather_block: block ", b, " of ", units_.size() - 1);
  for (size_t u = 1; u < units_.size(); ++u) {
    if (u == b || !units_[u]->keep) continue;
    units_[u]->keep = false;
    release(*units_[u]);
  }
  ensure_gathered(*units_[b]);
  units_[b]->keep = true;
}

std::vector<Tensor> Fsdp::gather_pieces(const std::vector<Tensor>& pieces) {
  QTUNE_CHECK(pieces.size() == pieces_.size(), "FSDP gather_pieces: ", pieces.size(), " pieces for ", pieces_.size(),
              " parameters");
  const Device device = device_.value_or(Device::cpu());
  std::vector<Tensor> out(pieces.size());
  for (const auto& unit : units_) {
    if (unit->trainable.empty()) continue;
    const DType dtype = pieces[static_cast<size_t>(unit->trainable.front().param_index)].dtype();
    std::vector<Segment> segments;
    std::vector<Tensor> wholes;
    for (const Entry& e : unit->trainable) {
      const Tensor& p = pieces[static_cast<size_t>(e.param_index)];
      QTUNE_CHECK(p.dtype() == dtype && p.numel() == pieces_[static_cast<size_t>(e.param_index)].numel(),
                  "FSDP gather_pieces: the piece of ", e.name, " is ", dtype_name(p.dtype()), " ", shape_str(p.shape()),
                  ", expected ", pieces_[static_cast<size_t>(e.param_index)].numel(), " elements of one dtype");
      segments.push_back({e.name, dtype, e.whole.numel(), numerics::kSquaredNormBlock});
      Tensor& whole = out[static_cast<size_t>(e.param_index)];
      whole = Tensor::empty(e.whole.shape(), dtype, device);
      wholes.push_back(whole);
    }
    const FlatLayout layout(std::move(segments), comm_.size());
    const int64_t size = static_cast<int64_t>(dtype_size(dtype));
    const Tensor shard = Tensor::zeros({layout.shard_bytes() / size}, dtype, device);
    for (size_t s = 0; s < unit->trainable.size(); ++s)
      shard.narrow(0, layout.piece_offset(s) / size, layout.piece_count(s))
          .copy_(
              pieces[static_cast<size_t>(unit->trainable[s].param_index)].contiguous().view({layout.piece_count(s)}));
    const Tensor gathered = Tensor::empty({shard.numel() * comm_.size()}, dtype, device);
    comm_.all_gather(buffer_of(shard), buffer_of(gathered))->wait();
    unpack(layout, gathered, wholes);
  }
  return out;
}

std::vector<Tensor> Fsdp::shard_whole(const std::vector<Tensor>& whole) const {
  QTUNE_CHECK(whole.size() == pieces_.size(), "FSDP shard_whole: ", whole.size(), " tensors for ", pieces_.size(),
              " parameters");
  std::vector<Tensor> out;
  for (size_t j = 0; j < whole.size(); ++j) {
    const auto [u, k] = where_[j];
    const Unit& unit = *units_[u];
    const Tensor& model = unit.trainable[k].whole;
    QTUNE_CHECK(whole[j].shape() == model.shape(), "FSDP shard_whole: ", names_[j], " is ", shape_str(whole[j].shape()),
                ", the model's is ", shape_str(model.shape()));
    const Range held = unit.train->held(comm_.rank(), k);
    Tensor piece = Tensor::zeros({pieces_[j].numel()}, whole[j].dtype(), whole[j].device());
    if (held.size() > 0)
      piece.narrow(0, 0, held.size())
          .copy_(whole[j].contiguous().view({model.numel()}).narrow(0, held.begin, held.size()));
    out.push_back(piece);
  }
  return out;
}

}  // namespace qtune::dist
