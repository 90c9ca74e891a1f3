#include "models/lora.h"

#include <algorithm>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <sstream>

#include "engine/autograd.h"
#include "engine/check.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"
#include "ops/nn/linear.h"
#include "quant/fake_quantized_linear.h"
#include "quant/float8_frozen_linear.h"
#include "quant/float8_linear.h"
#include "quant/frozen_ggml_linear.h"
#include "quant/frozen_nf4_linear.h"
#include "quant/module_swap.h"

namespace qtune::models {

namespace {

std::string joined(const std::vector<std::string>& names) {
  std::ostringstream out;
  for (size_t i = 0; i < names.size(); ++i) out << (i ? ", " : "") << names[i];
  return out.str();
}

// The linear bases LoRA knows how to size and merge.
struct BaseLinear {
  int64_t in, out;
  Tensor bias;                         // undefined without bias
  std::function<Tensor()> weight_f32;  // [out, in]
};

std::optional<BaseLinear> base_linear(Module& m) {
  auto dense = [](auto& l) -> BaseLinear {
    return {l.in_features(), l.out_features(), l.bias(), [&l] { return l.weight().detach().to(DType::f32); }};
  };
  if (auto* l = dynamic_cast<nn::Linear*>(&m)) return dense(*l);
  if (auto* l = dynamic_cast<quant::FakeQuantizedLinear*>(&m)) return dense(*l);
  if (auto* l = dynamic_cast<quant::Float8Linear*>(&m)) return dense(*l);
  if (auto* l = dynamic_cast<quant::FrozenNF4Linear*>(&m))
    return BaseLinear{l->in_features(), l->out_features(), l->bias(),
                      [l] { return l->weight().dequantize(DType::f32); }};
  if (auto* l = dynamic_cast<quant::FrozenGgmlLinear*>(&m))
    return BaseLinear{l->in_features(), l->out_features(), l->bias(), [l] { return l->dequantize(DType::f32); }};
  if (auto* l = dynamic_cast<quant::Float8FrozenLinear*>(&m))
    return BaseLinear{l->in_features(), l->out_features(), l->bias(),
                      [l] { return quant::dequantize_fp8(l->weight()); }};
  return std::nullopt;
}

}  // namespace

std::optional<std::pair<int64_t, int64_t>> lora_base_features(Module& base) {
  const std::optional<BaseLinear> b = base_linear(base);
  if (!b) return std::nullopt;
  return std::make_pair(b->in, b->out);
}

quant::ModelQuantization qlora_base(const LoraConfig& config) {
  const bool head = std::find(config.targets.begin(), config.targets.end(), "lm_head") != config.targets.end();
  return quant::ModelQuantization{quant::NF4{}, std::nullopt, head};
}

const std::vector<std::string>& lora_target_names() {
  static const std::vector<std::string> names = {"q_proj",    "k_proj",  "v_proj",    "o_proj",
                                                 "gate_proj", "up_proj", "down_proj", "lm_head"};
  return names;
}

int64_t apply_lora(Llama& model, const LoraConfig& config) {
  const auto& valid = lora_target_names();
  QTUNE_CHECK(!config.targets.empty(), "apply_lora: no target modules (valid: ", joined(valid), ")");
  std::set<std::string> targets;
  for (const std::string& t : config.targets) {
    QTUNE_CHECK(std::find(valid.begin(), valid.end(), t) != valid.end(), "apply_lora: unknown target module '", t,
                "' (valid: ", joined(valid), ")");
    QTUNE_CHECK(targets.insert(t).second, "apply_lora: target module '", t, "' listed twice");
  }
  QTUNE_CHECK(!(targets.count("lm_head") && model.config().tie_word_embeddings),
              "apply_lora: target 'lm_head' on a model with tie_word_embeddings (the head is the embedding; "
              "hint: drop lm_head from the targets)");
  const auto existing = lora_modules(model);
  QTUNE_CHECK(existing.empty(), "apply_lora: the model already has LoRA modules (", existing.front().first,
              ", ...); merge_lora first or load the adapter into a fresh model");

  auto selected = [&](std::string_view fqn) { return targets.count(std::string(split_name(fqn).leaf)) > 0; };
  // Every target is checked before the first swap, so a failure leaves the model as it was.
  for (const auto& [fqn, m] : model.named_modules())
    QTUNE_CHECK(!selected(fqn) || base_linear(*m).has_value(), "apply_lora: ", fqn, " is a ", m->type_name(),
                ", which LoRA cannot wrap (supported: Linear, FrozenNF4Linear, FrozenGgmlLinear, FakeQuantizedLinear, "
                "Float8Linear, Float8FrozenLinear)");

  Generator init(config.seed);
  const int64_t wrapped = quant::swap_modules(
      model, [&](const Module&, std::string_view fqn) { return selected(fqn); },
      [&](Module& m, std::string_view fqn) -> ModulePtr {
        const BaseLinear base = *base_linear(m);
        const LoRAOptions options{.rank = config.rank,
                                  .alpha = config.alpha,
                                  .dropout = config.dropout,
                                  .dtype = model.options().dtype,
                                  .device = model.options().device,
                                  .init_generator = &init};
        // The factory sees the module, not its owning pointer: take ownership from the tree by parking a
        // placeholder in the slot (swap_modules puts the LoRALinear there next), and put the base back
        // if the LoRALinear cannot be built.
        ModulePtr owned = model.replace_module(fqn, std::make_shared<Module>("LoRAPlaceholder"));
        try {
          return std::make_shared<LoRALinear>(owned, base.in, base.out, options);
        } catch (...) {
          model.replace_module(fqn, owned);
          throw;
        }
      });

  NoGradGuard no_grad;
  model.requires_grad_(false);
  for (Tensor& t : lora_parameters(model)) t.requires_grad_(true);
  return wrapped;
}

std::vector<std::pair<std::string, LoRALinear*>> lora_modules(Module& root) {
  std::vector<std::pair<std::string, LoRALinear*>> out;
  for (const auto& [fqn, m] : root.named_modules())
    if (auto* lora = dynamic_cast<LoRALinear*>(m)) out.emplace_back(fqn, lora);
  return out;
}

std::vector<Tensor> lora_parameters(Module& root) {
  std::vector<Tensor> out;
  for (const auto& [fqn, lora] : lora_modules(root)) {
    out.push_back(lora->lora_a());
    out.push_back(lora->lora_b());
  }
  return out;
}

int64_t merge_lora(Llama& model) {
  NoGradGuard no_grad;
  const DType dtype = model.options().dtype;
  const Device device = model.options().device;
  return quant::swap_modules(
      model, [](const Module& m, std::string_view) { return dynamic_cast<const LoRALinear*>(&m) != nullptr; },
      [&](Module& m, std::string_view fqn) -> ModulePtr {
        auto& lora = static_cast<LoRALinear&>(m);
        const std::optional<BaseLinear> base = base_linear(lora.base());
        QTUNE_CHECK(base.has_value(), "merge_lora: ", fqn, " wraps a ", lora.base().type_name(),
                    ", which has no weight to merge into");
        // W + s * B @ A, all in f32: B @ A is [out, rank] @ [rank, in].
        const Tensor delta = ops::matmul(lora.lora_b().detach().to(DType::f32), lora.lora_a().detach().to(DType::f32));
        const Tensor merged = ops::add(base->weight_f32(), ops::scale(delta, lora.scaling()));
        std::shared_ptr<nn::Linear> linear;
        {
          SkipInitGuard skip;
          linear = std::make_shared<nn::Linear>(
              base->in, base->out, nn::Linear::Options{.bias = base->bias.defined(), .dtype = dtype, .device = device});
        }
        linear->weight().copy_(merged.to(dtype));
        if (base->bias.defined()) linear->bias().copy_(base->bias.detach().to(dtype));
        linear->requires_grad_(false);
        linear->train(lora.is_training());
        return linear;
      });
}

}  // namespace qtune::models
