#pragma once
// Module: a tree of named children with named parameters and buffers. Names follow Hugging Face
// ("model.layers.3.self_attn.q_proj.weight"). Subclasses keep their parameters, buffers and
// children as members and register the member's address, so a pass that replaces a child by its
// fully qualified name (replace_module) updates the member the forward code reads.
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace qtune {

class Module;
using ModulePtr = std::shared_ptr<Module>;
using StateDict = std::map<std::string, Tensor>;
// Selects modules for a pass: (module, fully qualified name) -> should this one be swapped?
using ModuleFilter = std::function<bool(const Module&, std::string_view fqn)>;

// A fully qualified name split at its last dot: "model.layers.0.mlp.up_proj" -> {"model.layers.0.mlp",
// "up_proj"}; a name without a dot is all leaf, with an empty parent.
struct NameParts {
  std::string_view parent, leaf;
};
NameParts split_name(std::string_view fqn);

// While one is alive on this thread, modules allocate their parameters without drawing initial values:
// for loaders that overwrite every parameter next (drawing a large model's random init costs more than
// reading its checkpoint). Values are then unspecified until loaded.
class SkipInitGuard {
 public:
  SkipInitGuard();
  ~SkipInitGuard();
  SkipInitGuard(const SkipInitGuard&) = delete;
  SkipInitGuard& operator=(const SkipInitGuard&) = delete;

 private:
  bool previous_;
};
bool parameter_init_enabled();

class Module {
 public:
  explicit Module(std::string type_name) : type_name_(std::move(type_name)) {}
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // The single-input forward most modules have; multi-input modules add their own.
  virtual Tensor forward(const Tensor& x);
  Tensor operator()(const Tensor& x) { return forward(x); }
  const std::string& type_name() const { return type_name_; }

  // Depth-first, parents before children; the root has name "".
  std::vector<std::pair<std::string, Module*>> named_modules(const std::string& prefix = "");
  std::vector<std::pair<std::string, Module*>> named_children();
  // Each distinct tensor once: a tied parameter is listed under its first name only (state_dict keeps all).
  std::vector<std::pair<std::string, Tensor>> named_parameters(const std::string& prefix = "", bool recurse = true);
  std::vector<std::pair<std::string, Tensor>> named_buffers(const std::string& prefix = "", bool recurse = true);
  std::vector<Tensor> parameters(bool recurse = true);
  // Parameters with requires_grad (what an optimizer updates).
  std::vector<Tensor> trainable_parameters();
  Module* find_module(std::string_view fqn);  // nullptr when absent
  Tensor* find_parameter(std::string_view fqn);

  StateDict state_dict();  // parameters and persistent buffers, by fully qualified name
  struct LoadResult {
    std::vector<std::string> missing, unexpected, mismatched;
  };
  // Copies values into the existing tensors (their dtype and device are kept). Strict: any missing,
  // unexpected or mis-shaped key throws, listing every one of them; non-strict returns them.
  LoadResult load_state_dict(const StateDict& state, bool strict = true);

  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  void requires_grad_(bool on);  // on every parameter
  void zero_grad();
  // Moves or casts every parameter and buffer in place (the tensors keep their identity).
  void to(Device device);
  void to(DType dtype);  // floating tensors only

  // Swaps the child at `fqn` ("model.layers.0.mlp.up_proj") for `replacement`; returns the old one.
  ModulePtr replace_module(std::string_view fqn, ModulePtr replacement);

  // Re-points every parameter of this subtree into one contiguous buffer (in named_parameters order;
  // all must share dtype and device) and returns it. Writes through the buffer change the parameters.
  Tensor flatten_parameters();

 protected:
  Tensor& register_parameter(std::string name, Tensor* slot, bool requires_grad = true);
  Tensor& register_buffer(std::string name, Tensor* slot, bool persistent = true);
  void register_module(std::string name, ModulePtr* slot);
  // Called after train()/eval() flips the mode, for modules with mode-dependent state.
  virtual void on_train_mode(bool) {}

 private:
  struct BufferSlot {
    std::string name;
    Tensor* slot;
    bool persistent;
  };
  std::string type_name_;
  bool training_ = true;
  std::vector<std::pair<std::string, Tensor*>> params_;
  std::vector<BufferSlot> buffers_;
  std::vector<std::pair<std::string, ModulePtr*>> children_;
};

// Puts a module in eval mode for a scope (generation, evaluation) and restores its previous
// train/eval mode on exit, also when the scope is left by an exception.
class EvalModeGuard {
 public:
  explicit EvalModeGuard(Module& m) : module_(m), was_training_(m.is_training()) { m.eval(); }
  ~EvalModeGuard() { module_.train(was_training_); }
  EvalModeGuard(const EvalModeGuard&) = delete;
  EvalModeGuard& operator=(const EvalModeGuard&) = delete;

 private:
  Module& module_;
  bool was_training_;
};

// A container whose children are named "0", "1", ... (HF's `layers`).
class ModuleList : public Module {
 public:
  ModuleList() : Module("ModuleList") {}
  void append(ModulePtr module);
  size_t size() const { return items_.size(); }
  Module& operator[](size_t i) { return **items_[i]; }
  ModulePtr& slot(size_t i) { return *items_[i]; }

 private:
  std::vector<std::unique_ptr<ModulePtr>> items_;  // stable addresses for the registered slots
};

}  // namespace qtune
