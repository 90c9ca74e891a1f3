#include "engine/module.h"

#include <sstream>
#include <unordered_set>

#include "engine/autograd.h"
#include "engine/check.h"

namespace qtune {

namespace {
thread_local bool skip_init = false;
}  // namespace

SkipInitGuard::SkipInitGuard() : previous_(skip_init) { skip_init = true; }
SkipInitGuard::~SkipInitGuard() { skip_init = previous_; }
bool parameter_init_enabled() { return !skip_init; }
namespace {
std::string join_name(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

std::string list_keys(const std::vector<std::string>& keys) {
  std::ostringstream out;
  const size_t shown = std::min<size_t>(keys.size(), 20);
  for (size_t i = 0; i < shown; ++i) out << (i ? ", " : "") << keys[i];
  if (keys.size() > shown) out << ", ... (" << keys.size() - shown << " more)";
  return out.str();
}
}  // namespace

Tensor Module::forward(const Tensor&) { QTUNE_FAIL("module ", type_name_, " has no single-tensor forward()"); }

Tensor& Module::register_parameter(std::string name, Tensor* slot, bool requires_grad) {
  QTUNE_CHECK(slot->defined(), "register_parameter('", name, "') with an undefined tensor");
  if (requires_grad && is_floating(slot->dtype())) slot->requires_grad_(true);
  params_.emplace_back(std::move(name), slot);
  return *slot;
}

Tensor& Module::register_buffer(std::string name, Tensor* slot, bool persistent) {
  buffers_.push_back({std::move(name), slot, persistent});
  return *slot;
}

void Module::register_module(std::string name, ModulePtr* slot) {
  QTUNE_CHECK(*slot != nullptr, "register_module('", name, "') with a null module");
  children_.emplace_back(std::move(name), slot);
}

std::vector<std::pair<std::string, Module*>> Module::named_children() {
  std::vector<std::pair<std::string, Module*>> out;
  for (auto& [name, slot] : children_) out.emplace_back(name, slot->get());
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules(const std::string& prefix) {
  std::vector<std::pair<std::string, Module*>> out{{prefix, this}};
  for (auto& [name, slot] : children_) {
    auto sub = (*slot)->named_modules(join_name(prefix, name));
    out.insert(out.end(), sub.begin(), sub.end());
  }
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters(const std::string& prefix, bool recurse) {
  std::vector<std::pair<std::string, Tensor>> all;
  for (auto& [name, slot] : params_) all.emplace_back(join_name(prefix, name), *slot);
  if (recurse)
    for (auto& [name, slot] : children_) {
      auto sub = (*slot)->named_parameters(join_name(prefix, name), true);
      all.insert(all.end(), sub.begin(), sub.end());
    }
  // A tied parameter (lm_head sharing the embedding) appears once, under its first name, as in
  // PyTorch: an optimizer must not step it twice, and flatten_parameters must not copy it twice.
  // state_dict() still lists every name.
  std::unordered_set<const TensorImpl*> seen;
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& item : all)
    if (seen.insert(item.second.impl()).second) out.push_back(std::move(item));
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers(const std::string& prefix, bool recurse) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& b : buffers_) out.emplace_back(join_name(prefix, b.name), *b.slot);
  if (recurse)
    for (auto& [name, slot] : children_) {
      auto sub = (*slot)->named_buffers(join_name(prefix, name), true);
      out.insert(out.end(), sub.begin(), sub.end());
    }
  return out;
}

std::vector<Tensor> Module::parameters(bool recurse) {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters("", recurse)) out.push_back(t);
  return out;
}

std::vector<Tensor> Module::trainable_parameters() {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters())
    if (t.requires_grad()) out.push_back(t);
  return out;
}

NameParts split_name(std::string_view fqn) {
  const size_t dot = fqn.rfind('.');
  if (dot == std::string_view::npos) return {{}, fqn};
  return {fqn.substr(0, dot), fqn.substr(dot + 1)};
}

Module* Module::find_module(std::string_view fqn) {
  if (fqn.empty()) return this;
  const size_t dot = fqn.find('.');
  const std::string_view head = fqn.substr(0, dot);
  for (auto& [name, slot] : children_)
    if (name == head) return dot == std::string_view::npos ? slot->get() : (*slot)->find_module(fqn.substr(dot + 1));
  return nullptr;
}

Tensor* Module::find_parameter(std::string_view fqn) {
  const auto [parent, leaf] = split_name(fqn);
  Module* owner = find_module(parent);
  if (owner == nullptr) return nullptr;
  for (auto& [name, slot] : owner->params_)
    if (name == leaf) return slot;
  return nullptr;
}

StateDict Module::state_dict() {
  StateDict out;
  for (auto& [name, module] : named_modules()) {
    for (auto& [pname, slot] : module->params_) out[join_name(name, pname)] = *slot;
    for (auto& b : module->buffers_)
      if (b.persistent) out[join_name(name, b.name)] = *b.slot;
  }
  return out;
}

Module::LoadResult Module::load_state_dict(const StateDict& state, bool strict) {
  LoadResult result;
  StateDict mine = state_dict();
  for (auto& [key, target] : mine) {
    auto it = state.find(key);
    if (it == state.end()) {
      result.missing.push_back(key);
    } else if (it->second.shape() != target.shape()) {
      result.mismatched.push_back(key + " (expected " + shape_str(target.shape()) + ", got " +
                                  shape_str(it->second.shape()) + ")");
    }
  }
  for (auto& [key, value] : state)
    if (!mine.count(key)) result.unexpected.push_back(key);
  if (strict) {
    QTUNE_CHECK(result.missing.empty() && result.unexpected.empty() && result.mismatched.empty(),
                "load_state_dict: missing keys: [", list_keys(result.missing), "]; unexpected keys: [",
                list_keys(result.unexpected), "]; mis-shaped keys: [", list_keys(result.mismatched), "]");
  }
  NoGradGuard no_grad;
  for (auto& [key, target] : mine) {
    auto it = state.find(key);
    if (it != state.end() && it->second.shape() == target.shape()) target.copy_(it->second);
  }
  return result;
}

void Module::train(bool on) {
  for (auto& [name, module] : named_modules()) {
    module->training_ = on;
    module->on_train_mode(on);
  }
}

void Module::requires_grad_(bool on) {
  for (auto& [name, t] : named_parameters())
    if (is_floating(t.dtype())) t.requires_grad_(on);
}

void Module::zero_grad() {
  for (auto& [name, t] : named_parameters()) t.zero_grad();
}

void Module::to(Device device) {
  NoGradGuard no_grad;
  for (auto& [name, t] : named_parameters()) t.set_data(t.detach().to(device));
  for (auto& [name, t] : named_buffers()) t.set_data(t.detach().to(device));
}

void Module::to(DType dtype) {
  NoGradGuard no_grad;
  auto cast = [dtype](Tensor& t) {
    if (!is_floating(t.dtype()) || t.dtype() == dtype) return;
    const bool grad = t.requires_grad();
    Tensor converted = t.detach().to(dtype);
    TensorImpl* impl = t.impl();
    impl->storage = converted.storage();
    impl->strides = converted.strides();
    impl->offset = converted.offset();
    impl->dtype = dtype;
    impl->grad.reset();
    impl->requires_grad = grad;
  };
  for (auto& [name, module] : named_modules()) {
    for (auto& [pname, slot] : module->params_) cast(*slot);
    for (auto& b : module->buffers_) cast(*b.slot);
  }
}

ModulePtr Module::replace_module(std::string_view fqn, ModulePtr replacement) {
  QTUNE_CHECK(replacement != nullptr, "replace_module('", fqn, "') with a null module");
  const auto [parent_name, leaf] = split_name(fqn);
  Module* parent = find_module(parent_name);
  QTUNE_CHECK(parent != nullptr, "replace_module: no module named '", parent_name, "'");
  for (auto& [name, slot] : parent->children_) {
    if (name == leaf) {
      ModulePtr old = std::move(*slot);
      *slot = std::move(replacement);
      return old;
    }
  }
  QTUNE_FAIL("replace_module: no child module named '", fqn, "'");
}

Tensor Module::flatten_parameters() {
  auto params = named_parameters();
  QTUNE_CHECK(!params.empty(), "flatten_parameters on a module without parameters");
  const DType dtype = params.front().second.dtype();
  const Device device = params.front().second.device();
  int64_t total = 0;
  for (auto& [name, t] : params) {
    QTUNE_CHECK(t.dtype() == dtype && t.device() == device, "flatten_parameters: '", name, "' is ",
                dtype_name(t.dtype()), " on ", t.device().str(), " but the first parameter is ", dtype_name(dtype),
                " on ", device.str());
    total += t.numel();
  }
  Tensor flat = Tensor::empty({total}, dtype, device);
  NoGradGuard no_grad;
  int64_t offset = 0;
  for (auto& [name, t] : params) {
    Tensor view = Tensor::from_storage(flat.storage(), t.shape(), contiguous_strides(t.shape()), offset, dtype);
    view.copy_(t);
    t.set_data(view);
    offset += t.numel();
  }
  return flat;
}

void ModuleList::append(ModulePtr module) {
  items_.push_back(std::make_unique<ModulePtr>(std::move(module)));
  register_module(std::to_string(items_.size() - 1), items_.back().get());
}

}  // namespace qtune
