#include "engine/autograd.h"

#include <algorithm>
#include <atomic>
#include <limits>
#include <unordered_map>
#include <unordered_set>

#include "engine/backend.h"
#include "engine/check.h"

namespace qtune {
namespace {
thread_local bool g_grad_enabled = true;
std::atomic<uint64_t> g_next_sequence_nr{0};

// a + b as a new tensor (never in place: either side may be shared with another consumer).
Tensor add_grads(const Tensor& a, const Tensor& b) {
  QTUNE_CHECK(a.shape() == b.shape(), "gradient shapes differ: ", shape_str(a.shape()), " vs ", shape_str(b.shape()),
              " (a backward rule returned a gradient of the wrong shape)");
  Tensor out = Tensor::empty(a.shape(), a.dtype(), a.device());
  backend_for(a.device()).binary(BinaryOp::add, a, b, out);
  return out;
}

// Takes the gradient by value: when the caller moved in the only handle to a contiguous tensor that
// nothing else views, that tensor becomes .grad as it is (no copy, no second buffer). Otherwise it may
// be shared with other consumers and .grad is later added to in place, so .grad gets a copy.
void accumulate_leaf(TensorImpl& leaf, Tensor grad) {
  QTUNE_CHECK(grad.shape() == leaf.shape, "gradient of shape ", shape_str(grad.shape()), " for a leaf of shape ",
              shape_str(leaf.shape));
  if (grad.dtype() != leaf.dtype) grad = grad.to(leaf.dtype);
  if (!leaf.grad) {
    const bool sole_owner = grad.impl_ptr().use_count() == 1 && grad.storage().use_count() == 1;
    leaf.grad = sole_owner && grad.is_contiguous() && !grad.requires_grad() ? grad.impl_ptr() : grad.clone().impl_ptr();
    return;
  }
  Tensor existing(leaf.grad);
  backend_for(existing.device()).binary(BinaryOp::add, existing, grad, existing);
}

Tensor ones_like_meta(const OutputMeta& meta, double value) {
  return Tensor::full(meta.shape, value, meta.dtype, meta.device);
}

}  // namespace

Node::Node(std::string name, std::vector<Edge> inputs, std::vector<OutputMeta> outputs, BackwardFn fn)
    : name_(std::move(name)),
      sequence_nr_(g_next_sequence_nr.fetch_add(1)),
      inputs_(std::move(inputs)),
      outputs_(std::move(outputs)),
      fn_(std::move(fn)) {}

std::vector<Tensor> Node::apply(const std::vector<Tensor>& grad_outputs) {
  QTUNE_CHECK(fn_, "backward through '", name_,
              "' a second time, but its saved tensors were freed; call backward(..., retain_graph=true) the "
              "first time");
  return fn_(grad_outputs);
}

namespace autograd {

bool grad_enabled() { return g_grad_enabled; }
void set_grad_enabled(bool enabled) { g_grad_enabled = enabled; }

bool needs_grad(std::initializer_list<Tensor> inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

void record(std::string name, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs, BackwardFn fn) {
  std::vector<Edge> edges(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& in = inputs[i];
    if (!in.defined() || !in.requires_grad()) continue;
    if (in.grad_fn())
      edges[i] = {in.grad_fn(), in.impl()->output_nr, nullptr};
    else
      edges[i] = {nullptr, 0, in.impl_ptr()};
  }
  std::vector<OutputMeta> metas;
  for (const Tensor& out : outputs) metas.push_back({out.shape(), out.dtype(), out.device()});
  auto node = std::make_shared<Node>(std::move(name), std::move(edges), std::move(metas), std::move(fn));
  for (size_t i = 0; i < outputs.size(); ++i) {
    TensorImpl* impl = outputs[i].impl();
    impl->requires_grad = true;
    impl->grad_fn = node;
    impl->output_nr = static_cast<int>(i);
  }
}

uint64_t next_sequence_nr() { return g_next_sequence_nr.load(); }

namespace {
thread_local int g_backward_depth = 0;
struct BackwardDepth {
  BackwardDepth() { ++g_backward_depth; }
  ~BackwardDepth() { --g_backward_depth; }
};
}  // namespace

bool backward_running() { return g_backward_depth > 0; }

void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads, bool retain_graph) {
  backward_releasing_from(roots, grads, retain_graph ? std::numeric_limits<uint64_t>::max() : 0);
}

void backward_releasing_from(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                             uint64_t first_released) {
  QTUNE_CHECK(roots.size() == grads.size(), "backward: ", roots.size(), " roots but ", grads.size(), " gradients");
  NoGradGuard no_grad;
  const BackwardDepth depth;

  // Count, for every node reachable from the roots, how many edges point at it.
  std::unordered_map<Node*, int> pending;
  std::vector<Node*> stack;
  for (const Tensor& root : roots) {
    if (root.grad_fn() && !pending.count(root.grad_fn().get())) {
      pending[root.grad_fn().get()] = 0;
      stack.push_back(root.grad_fn().get());
    }
  }
  // And how many edges point at each leaf: a leaf's contributions within this pass are summed first and added
  // to its .grad once, with the last of them (as torch does), so that a tensor used twice (tied embeddings)
  // accumulates over micro-batches the way a sharded run reduces them.
  std::unordered_map<TensorImpl*, int> leaf_pending;
  while (!stack.empty()) {
    Node* node = stack.back();
    stack.pop_back();
    for (const Edge& e : node->inputs()) {
      if (e.leaf) ++leaf_pending[e.leaf.get()];
      if (!e.node) continue;
      auto [it, inserted] = pending.try_emplace(e.node.get(), 0);
      ++it->second;
      if (inserted) stack.push_back(e.node.get());
    }
  }

  // Gradient buffers, one slot per node output; a node runs once all its consumers have run.
  std::unordered_map<Node*, std::vector<Tensor>> buffers;
  auto deposit = [&](Node* node, int output_nr, const Tensor& g) {
    auto& slots = buffers[node];
    if (slots.empty()) slots.resize(node->outputs().size());
    Tensor& slot = slots[static_cast<size_t>(output_nr)];
    slot = slot.defined() ? add_grads(slot, g) : g;
  };

  std::unordered_map<TensorImpl*, Tensor> leaf_sums;  // contributions still waiting for a leaf's last edge

  std::vector<Node*> ready;
  for (size_t i = 0; i < roots.size(); ++i) {
    const Tensor& root = roots[i];
    QTUNE_CHECK(root.requires_grad(), "backward on a tensor that does not require grad (shape ",
                shape_str(root.shape()), "); did you run the forward under NoGradGuard or on frozen inputs?");
    Tensor g = grads[i];
    if (!g.defined()) {
      QTUNE_CHECK(root.numel() == 1, "backward without a gradient needs a one-element output, got shape ",
                  shape_str(root.shape()));
      g = Tensor::ones(root.shape(), root.dtype(), root.device());
    }
    QTUNE_CHECK(g.shape() == root.shape(), "backward: gradient shape ", shape_str(g.shape()),
                " does not match output shape ", shape_str(root.shape()));
    // Backward rules assume the gradient has their output's dtype (binary ops refuse mixed dtypes).
    if (g.dtype() != root.dtype()) g = g.to(root.dtype());
    if (!root.grad_fn()) {
      accumulate_leaf(*root.impl(), std::move(g));
      continue;
    }
    deposit(root.grad_fn().get(), root.impl()->output_nr, g);
  }
  // Only roots can have no consumer. They run in the order given (ready is a stack), never in the pending
  // map's hash order: which root runs first decides the order in which shared gradients are summed.
  for (auto root = roots.rbegin(); root != roots.rend(); ++root) {
    Node* node = root->grad_fn().get();
    if (node && pending.at(node) == 0 && std::find(ready.begin(), ready.end(), node) == ready.end())
      ready.push_back(node);
  }

  while (!ready.empty()) {
    Node* node = ready.back();
    ready.pop_back();
    std::vector<Tensor> grad_outputs = std::move(buffers[node]);
    buffers.erase(node);
    grad_outputs.resize(node->outputs().size());
    for (size_t i = 0; i < grad_outputs.size(); ++i)
      if (!grad_outputs[i].defined()) grad_outputs[i] = ones_like_meta(node->outputs()[i], 0.0);

    std::vector<Tensor> grad_inputs = node->apply(grad_outputs);
    grad_outputs.clear();
    if (node->sequence_nr() >= first_released) node->release();
    QTUNE_CHECK(grad_inputs.size() == node->inputs().size(), "backward of '", node->name(), "' returned ",
                grad_inputs.size(), " gradients for ", node->inputs().size(), " inputs");

    for (size_t i = 0; i < grad_inputs.size(); ++i) {
      const Edge& e = node->inputs()[i];
      if (e.leaf) {
        TensorImpl* leaf = e.leaf.get();
        if (grad_inputs[i].defined()) {
          // Moved, not copied: a leaf's only handle lets accumulate_leaf keep the tensor instead of cloning it.
          Tensor g = std::move(grad_inputs[i]);
          if (g.dtype() != leaf->dtype) g = g.to(leaf->dtype);
          Tensor& sum = leaf_sums[leaf];
          sum = sum.defined() ? add_grads(sum, g) : std::move(g);
        }
        if (--leaf_pending[leaf] == 0) {
          const auto it = leaf_sums.find(leaf);
          if (it != leaf_sums.end()) {
            Tensor sum = std::move(it->second);
            leaf_sums.erase(it);
            accumulate_leaf(*leaf, std::move(sum));
          }
        }
        continue;
      }
      if (!grad_inputs[i].defined()) {
        if (e.node && --pending[e.node.get()] == 0) ready.push_back(e.node.get());
        continue;
      }
      if (e.node) {
        deposit(e.node.get(), e.output_nr, grad_inputs[i]);
        if (--pending[e.node.get()] == 0) ready.push_back(e.node.get());
      }
    }
  }
}

}  // namespace autograd
}  // namespace qtune
