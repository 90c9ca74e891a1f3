#pragma once
// Eager, define-by-run autograd. Each differentiable op that sees an input requiring grad records a
// Node: its backward rule (a closure that owns the saved tensors) and an edge per input.
// backward() walks nodes in reverse topological order, sums gradients per output, accumulates
// into leaf .grad, and drops each node's closure (its saved tensors) once it has run.
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace qtune {

// Given the gradient of each output (never undefined: missing ones are zeros), returns one
// gradient per input (undefined where the input needs none). Runs with grad mode off.
using BackwardFn = std::function<std::vector<Tensor>(const std::vector<Tensor>& grad_outputs)>;

struct Edge {
  std::shared_ptr<Node> node;        // the producer of this input, or null for a leaf / no-grad input
  int output_nr = 0;                 // which of node's outputs
  std::shared_ptr<TensorImpl> leaf;  // set for a leaf that requires grad
};

struct OutputMeta {
  Shape shape;
  DType dtype;
  Device device;
};

class Node {
 public:
  Node(std::string name, std::vector<Edge> inputs, std::vector<OutputMeta> outputs, BackwardFn fn);
  const std::string& name() const { return name_; }
  // Creation order: nodes recorded later have larger numbers.
  uint64_t sequence_nr() const { return sequence_nr_; }
  const std::vector<Edge>& inputs() const { return inputs_; }
  const std::vector<OutputMeta>& outputs() const { return outputs_; }
  bool released() const { return !fn_; }
  std::vector<Tensor> apply(const std::vector<Tensor>& grad_outputs);
  void release() { fn_ = nullptr; }

 private:
  std::string name_;
  uint64_t sequence_nr_;
  std::vector<Edge> inputs_;
  std::vector<OutputMeta> outputs_;
  BackwardFn fn_;
};

namespace autograd {

bool grad_enabled();
void set_grad_enabled(bool enabled);

// True when grad mode is on and any defined input requires grad: the op must record a node.
bool needs_grad(std::initializer_list<Tensor> inputs);
bool needs_grad(const std::vector<Tensor>& inputs);

// Attaches a node for `fn` to `outputs` (which become non-leaves requiring grad). Save outputs a
// closure needs as out.detach(), never the output handle itself (that would be a cycle).
void record(std::string name, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs, BackwardFn fn);

// Backpropagates from `roots` seeded with `grads` (same count; an undefined grad means ones for a
// one-element root). With retain_graph the nodes keep their saved tensors for another pass.
void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads, bool retain_graph = false);

// True while a backward pass runs on this thread (activation checkpointing recomputes forwards inside it).
bool backward_running();

// The sequence number the next recorded node will get.
uint64_t next_sequence_nr();
// backward() that frees only nodes recorded at or after `first_released` and keeps older ones.
// Checkpoint's recomputation uses it: it frees the graph it rebuilt, while older nodes it reaches
// (the history of a non-leaf tensor the checkpointed function captured) stay for other passes.
void backward_releasing_from(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                             uint64_t first_released);

}  // namespace autograd

// Turns grad recording off for its lifetime (restores the previous mode on exit).
class NoGradGuard {
 public:
  NoGradGuard() : previous_(autograd::grad_enabled()) { autograd::set_grad_enabled(false); }
  ~NoGradGuard() { autograd::set_grad_enabled(previous_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

class EnableGradGuard {
 public:
  EnableGradGuard() : previous_(autograd::grad_enabled()) { autograd::set_grad_enabled(true); }
  ~EnableGradGuard() { autograd::set_grad_enabled(previous_); }
  EnableGradGuard(const EnableGradGuard&) = delete;
  EnableGradGuard& operator=(const EnableGradGuard&) = delete;

 private:
  bool previous_;
};

}  // namespace qtune
