#pragma once
// Optimizer: updates a fixed list of parameters from their .grad. Parameters whose grad is undefined
// (frozen, or not reached by this backward) are skipped, exactly as torch.optim skips them. State is
// kept per parameter index, in f32 whatever the parameter dtype, on the parameter's device.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace qtune::optim {

// An optimizer's resumable state: named tensors ("state.<i>.<name>" for parameter i, e.g.
// "state.3.exp_avg") plus scalars ("step", "lr", ...), as a checkpoint stores them.
struct OptimizerState {
  std::map<std::string, Tensor> tensors;
  std::map<std::string, double> scalars;
};

class Optimizer {
 public:
  explicit Optimizer(std::vector<Tensor> params, double lr);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter that has a gradient; increments step_count().
  virtual void step() = 0;
  // Drops every parameter's gradient (set_to_none semantics).
  void zero_grad();

  double lr() const { return lr_; }
  void set_lr(double lr) { lr_ = lr; }  // what an LR schedule calls before each step
  int64_t step_count() const { return step_; }
  const std::vector<Tensor>& params() const { return params_; }

  // Everything step() depends on besides the parameters, so that a restored optimizer continues
  // bit-identically. The tensors are the live state, not copies (a copy of a 7B model's moments would
  // cost 56 GB): write them out before the next step(). Only parameters that have been updated have
  // state. load_state() checks names, shapes and dtypes and fails naming the first mismatch, before
  // changing anything; it copies the tensors (onto each parameter's device), so the caller's map may go.
  virtual OptimizerState state() const = 0;
  virtual void load_state(const OptimizerState& state) = 0;

  // "state.<i>.<name>" -> {i, name}; throws naming the key for another form or for i >= parameter_count.
  static std::pair<size_t, std::string> parse_state_key(const std::string& key, size_t parameter_count);

  // Mixed precision (docs/numerics.md, "Mixed precision"): an f32 master copy of every bf16/f16 parameter.
  // step() updates the master, from the gradient widened to f32, and rounds it once into the parameter, so
  // updates smaller than half the parameter's rounding step add up instead of vanishing. The masters are state:
  // state() holds them as "state.<i>.master". Call before the first step.
  void keep_f32_masters();
  bool keeps_f32_masters() const { return !masters_.empty(); }

 protected:
  // What step() updates for parameter i and the gradient it reads: the f32 master and the gradient widened to
  // f32 when there is a master, else the parameter and its gradient. publish(i) then rounds the master into
  // the parameter (nothing without a master).
  Tensor update_target(size_t i) const;
  // Parameter i's f32 master; undefined without one.
  const Tensor& master_of(size_t i) const;
  Tensor update_grad(size_t i, const Tensor& grad) const;
  void publish(size_t i) const;
  // The masters into a state, and back (a master the state lacks starts from its parameter, as on a first step).
  void save_masters(OptimizerState& state) const;
  void load_masters(const OptimizerState& state);

  // "state.<i>.<name>"
  static std::string state_key(size_t index, const std::string& name);
  // The checks load_state() shares: scalars "step" and "lr" present; every other key is
  // "state.<i>.<name>" with i a parameter index and name one of tensor_names or "master" where this optimizer
  // keeps one (tensors: f32 of parameter i's shape) or scalar_names. Throws naming the first offending key.
  void check_state(const OptimizerState& state, const std::vector<std::string>& tensor_names,
                   const std::vector<std::string>& scalar_names, const char* optimizer) const;
  // A fresh f32 copy of a saved state tensor on parameter `index`'s device.
  Tensor restore_tensor(const Tensor& saved, size_t index) const;

  std::vector<Tensor> params_;
  std::vector<Tensor> masters_;  // empty, or one per parameter: f32 for a bf16/f16 one, undefined for f32
  double lr_;
  int64_t step_ = 0;
};

}  // namespace qtune::optim
