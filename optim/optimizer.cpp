#include "optim/optimizer.h"

#include <charconv>
#include <cmath>
#include <set>

#include "engine/backend.h"
#include "engine/check.h"

namespace qtune::optim {

Optimizer::Optimizer(std::vector<Tensor> params, double lr) : params_(std::move(params)), lr_(lr) {
  QTUNE_CHECK(std::isfinite(lr) && lr >= 0.0, "optimizer: lr must be a finite number >= 0, got ", lr);
  std::set<const TensorImpl*> seen;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    QTUNE_CHECK(p.defined(), "optimizer: parameter ", i, " is an undefined tensor");
    const DType dt = p.dtype();
    QTUNE_CHECK(dt == DType::f32 || dt == DType::bf16 || dt == DType::f16, "optimizer: parameter ", i, " ",
                shape_str(p.shape()), " has dtype ", dtype_name(dt),
                "; optimizers update f32, bf16 or f16 parameters (convert the model first)");
    QTUNE_CHECK(p.is_contiguous(), "optimizer: parameter ", i, " ", shape_str(p.shape()),
                " is not contiguous; parameters are updated in place and must be");
    QTUNE_CHECK(seen.insert(p.impl()).second, "optimizer: parameter ", i, " ", shape_str(p.shape()),
                " appears more than once in the parameter list");
  }
}

void Optimizer::zero_grad() {
  for (const Tensor& p : params_) p.zero_grad();
}

std::string Optimizer::state_key(size_t index, const std::string& name) {
  return "state." + std::to_string(index) + "." + name;
}

namespace {

// Splits "state.<i>.<name>" into i and name; false for any other shape of key.
bool split_state_key(const std::string& key, size_t& index, std::string& name) {
  constexpr std::string_view prefix = "state.";
  if (key.rfind(prefix, 0) != 0) return false;
  const size_t dot = key.find('.', prefix.size());
  if (dot == std::string::npos || dot == prefix.size() || dot + 1 == key.size()) return false;
  const char* begin = key.data() + prefix.size();
  const char* end = key.data() + dot;
  const auto [ptr, ec] = std::from_chars(begin, end, index);
  if (ec != std::errc() || ptr != end) return false;
  name = key.substr(dot + 1);
  return true;
}

bool contains(const std::vector<std::string>& names, const std::string& name) {
  for (const std::string& n : names)
    if (n == name) return true;
  return false;
}

}  // namespace

std::pair<size_t, std::string> Optimizer::parse_state_key(const std::string& key, size_t parameter_count) {
  size_t index = 0;
  std::string name;
  QTUNE_CHECK(split_state_key(key, index, name), "optimizer state ", key, ": expected state.<parameter>.<name>");
  QTUNE_CHECK(index < parameter_count, "optimizer state ", key, ": the model has ", parameter_count,
              " trainable tensors");
  return {index, name};
}

void Optimizer::check_state(const OptimizerState& state, const std::vector<std::string>& tensor_names,
                            const std::vector<std::string>& scalar_names, const char* optimizer) const {
  const char* hint = " (was this state saved by another optimizer, or for another model or parameter list?)";
  for (const auto& [key, t] : state.tensors) {
    size_t index = 0;
    std::string name;
    QTUNE_CHECK(split_state_key(key, index, name) && (contains(tensor_names, name) || name == "master"), optimizer,
                " state: unknown tensor '", key, "'", hint);
    QTUNE_CHECK(index < params_.size(), optimizer, " state: '", key, "' names parameter ", index, " of ",
                params_.size(), hint);
    QTUNE_CHECK(name != "master" || (keeps_f32_masters() && masters_[index].defined()), optimizer, " state: '", key,
                "' is an f32 master copy of parameter ", index, ", but this optimizer keeps ",
                keeps_f32_masters() ? "none for that parameter (it is f32)" : "no masters",
                " (resume with model.master_dtype=f32, as the run that saved it trained)");
    QTUNE_CHECK(t.defined() && t.dtype() == DType::f32 && t.shape() == params_[index].shape(), optimizer, " state: '",
                key, "' is ", t.defined() ? dtype_name(t.dtype()) : "undefined", " ",
                t.defined() ? shape_str(t.shape()) : "", ", expected f32 ", shape_str(params_[index].shape()),
                " like parameter ", index, hint);
  }
  for (const char* required : {"step", "lr"})
    QTUNE_CHECK(state.scalars.count(required) == 1, optimizer, " state: scalar '", required, "' is missing", hint);
  for (const auto& [key, value] : state.scalars) {
    if (key == "step" || key == "lr") continue;
    size_t index = 0;
    std::string name;
    QTUNE_CHECK(split_state_key(key, index, name) && contains(scalar_names, name), optimizer,
                " state: unknown scalar '", key, "'", hint);
    QTUNE_CHECK(index < params_.size(), optimizer, " state: '", key, "' names parameter ", index, " of ",
                params_.size(), hint);
    QTUNE_CHECK(std::isfinite(value), optimizer, " state: scalar '", key, "' is ", value);
  }
  const double step = state.scalars.at("step"), lr = state.scalars.at("lr");
  QTUNE_CHECK(step >= 0 && step == std::floor(step), optimizer, " state: step must be a whole number >= 0, got ", step);
  QTUNE_CHECK(std::isfinite(lr) && lr >= 0, optimizer, " state: lr must be a finite number >= 0, got ", lr);
}

void Optimizer::keep_f32_masters() {
  QTUNE_CHECK(step_ == 0, "optimizer: f32 masters must be kept from the first step (", step_, " steps taken)");
  masters_.assign(params_.size(), Tensor());
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    if (p.dtype() == DType::f32) continue;
    masters_[i] = Tensor::empty(p.shape(), DType::f32, p.device());
    backend_for(p.device()).copy(p, masters_[i]);
  }
}

Tensor Optimizer::update_target(size_t i) const {
  const Tensor& master = master_of(i);
  return master.defined() ? master : params_[i];
}

const Tensor& Optimizer::master_of(size_t i) const {
  static const Tensor none;
  return keeps_f32_masters() ? masters_[i] : none;
}

Tensor Optimizer::update_grad(size_t i, const Tensor& grad) const {
  if (!master_of(i).defined()) return grad.contiguous();
  Tensor wide = Tensor::empty(grad.shape(), DType::f32, grad.device());
  backend_for(grad.device()).copy(grad, wide);
  return wide;
}

void Optimizer::publish(size_t i) const {
  if (const Tensor& master = master_of(i); master.defined()) backend_for(params_[i].device()).copy(master, params_[i]);
}

void Optimizer::save_masters(OptimizerState& state) const {
  for (size_t i = 0; i < masters_.size(); ++i)
    if (masters_[i].defined()) state.tensors[state_key(i, "master")] = masters_[i];
}

void Optimizer::load_masters(const OptimizerState& state) {
  for (size_t i = 0; i < masters_.size(); ++i) {
    if (!masters_[i].defined()) continue;
    const auto it = state.tensors.find(state_key(i, "master"));
    if (it != state.tensors.end())
      masters_[i] = restore_tensor(it->second, i);
    else
      backend_for(params_[i].device()).copy(params_[i], masters_[i]);
  }
}

Tensor Optimizer::restore_tensor(const Tensor& saved, size_t index) const {
  Tensor t = Tensor::empty(saved.shape(), DType::f32, params_[index].device());
  t.copy_(saved);
  return t;
}

}  // namespace qtune::optim
