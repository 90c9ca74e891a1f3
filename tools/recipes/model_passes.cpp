#include "tools/recipes/model_passes.h"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <utility>
#include <variant>
#include <vector>

#include "models/lora.h"
#include "models/peft_adapter.h"
#include "models/quantize_model.h"
#include "quant/float8.h"
#include "quant/float8_frozen_linear.h"
#include "quant/frozen_nf4_linear.h"
#include "quant/qat.h"

namespace qtune::recipes {

quant::QATConfig qat_config(const QuantSection& quant) {
  quant::LinearScheme scheme = quant::parse_linear_scheme(quant.scheme);
  if (quant.group_size > 0) {
    if (auto* s = std::get_if<quant::Int8DynActInt4Weight>(&scheme)) s->group_size = quant.group_size;
    if (auto* s = std::get_if<quant::Int4WeightOnly>(&scheme)) s->group_size = quant.group_size;
  }
  quant::QATConfig config{scheme, quant::QATStep::Prepare};
  config.fake_quant_after_n_steps = quant.fake_quant_after_n_steps;
  return config;
}

bool lora_targets_head(const RunConfig& config) {
  const auto& t = config.lora.targets;
  return std::find(t.begin(), t.end(), "lm_head") != t.end();
}

models::LoraConfig lora_config(const RunConfig& config) {
  models::LoraConfig lora;
  lora.rank = config.lora.rank;
  lora.alpha = config.lora.alpha;
  lora.dropout = config.lora.dropout;
  lora.targets = config.lora.targets;
  lora.seed = config.train.seed;
  return lora;
}

namespace {

bool is_lora_recipe(const std::string& recipe) { return recipe == "lora" || recipe == "qlora" || recipe == "qat_lora"; }

std::string count_text(int64_t n) {
  if (n >= 10'000'000) return std::to_string(n / 1'000'000) + "M";
  if (n >= 10'000) return std::to_string(n / 1'000) + "k";
  return std::to_string(n);
}

int64_t numel_of(const std::vector<Tensor>& tensors) {
  int64_t n = 0;
  for (const Tensor& t : tensors) n += t.numel();
  return n;
}

// The passes of prepare_model, in order: QAT or float8 on the linears, NF4 on the frozen projections,
// then the adapters (whose LoRA branch must wrap whatever the base became).
void apply_passes(const RunConfig& config, models::Llama& model, const std::function<void(const std::string&)>& tell) {
  const bool qat = config.recipe == "qat" || config.recipe == "qat_lora";
  if (qat) {
    const quant::QATConfig qat_cfg = qat_config(config.quant);
    const int64_t n = quant::quantize_(model, qat_cfg);
    std::string text = "QAT: " + std::to_string(n) + " linears fake-quantized with " +
                       quant::scheme_name(qat_cfg.scheme) + " (" +
                       std::to_string(quant::weight_spec(qat_cfg.scheme).group_size) + " weights per scale)";
    if (qat_cfg.fake_quant_after_n_steps > 0) {
      text += ", switched on after step " + std::to_string(qat_cfg.fake_quant_after_n_steps);
    }
    tell(text);
  }
  if (!config.fp8.recipe.empty()) {
    const auto fp8 = quant::Float8LinearConfig::from_recipe(quant::parse_float8_recipe(config.fp8.recipe));
    if (is_lora_recipe(config.recipe)) {
      // Frozen under the adapters: each weight stored once in e4m3 (the loader may have done it already).
      quant::convert_to_float8_frozen(model, fp8);
      int64_t n = 0;
      for (const auto& [fqn, m] : model.named_modules()) n += dynamic_cast<quant::Float8FrozenLinear*>(m) != nullptr;
      tell("float8: " + std::to_string(n) + " frozen linears stored in e4m3 for the " + config.fp8.recipe +
           " recipe (the output head and dims not a multiple of 16 stay high precision)");
    } else {
      const int64_t n = quant::convert_to_float8(model, fp8);
      tell("float8: " + std::to_string(n) + " linears converted to the " + config.fp8.recipe +
           " recipe (the output head and dims not a multiple of 16 stay high precision)");
    }
  }
  if (config.recipe == "qlora") {
    // Projections the loader already stored in NF4 are FrozenNF4Linear, which the filter passes over. The
    // head stays full precision unless it carries an adapter (NUMERICS.md §4).
    const bool head = lora_targets_head(config);
    quant::convert_to_nf4(model, [head](const Module&, std::string_view fqn) {
      return models::is_decoder_projection(fqn) || (head && fqn == "lm_head");
    });
    int64_t nf4 = 0;
    for (const auto& [fqn, m] : model.named_modules()) nf4 += dynamic_cast<quant::FrozenNF4Linear*>(m) != nullptr;
    tell("QLoRA: " + std::to_string(nf4) + " frozen linears stored in NF4");
  }
  if (is_lora_recipe(config.recipe)) {
    const int64_t total = numel_of(model.parameters());
    const int64_t wrapped = models::apply_lora(model, lora_config(config));
    const int64_t trainable = numel_of(models::lora_parameters(model));
    tell("LoRA: rank " + std::to_string(config.lora.rank) + " adapters on " + std::to_string(wrapped) + " linears; " +
         count_text(trainable) + " trainable parameters of " + count_text(total + trainable));
  }
}

std::string base_model_name(const RunConfig& config) {
  return config.model.path.empty() ? "(inline model.config)" : config.model.path;
}

}  // namespace

void add_model_passes(const RunConfig& config, TrainHooks& hooks) {
  const bool qat = config.recipe == "qat" || config.recipe == "qat_lora";
  if (config.recipe == "full" && config.fp8.recipe.empty()) return;
  const auto note = hooks.on_note;
  const auto tell = [note](const std::string& text) {
    if (note) note(text);
  };
  auto then = std::move(hooks.prepare_model);
  hooks.prepare_model = [config, tell, then](models::Llama& model) {
    apply_passes(config, model, tell);
    if (then) then(model);
  };
  if (qat) {
    auto before = std::move(hooks.before_step);
    hooks.before_step = [before](models::Llama& model, int64_t steps_done) {
      quant::set_qat_step(model, steps_done);
      // A LoRA wrapper holds its base outside the module tree (the base keeps its HF parameter names).
      for (auto& [fqn, lora] : models::lora_modules(model)) quant::set_qat_step(lora->base(), steps_done);
      if (before) before(model, steps_done);
    };
  }
  if (is_lora_recipe(config.recipe)) {
    const models::LoraConfig lora = lora_config(config);
    const std::string base = base_model_name(config);
    hooks.save_weights = [lora, base](models::Llama& model, const std::string& dir) {
      models::save_adapter(model, lora, dir, base);
    };
    hooks.load_weights = [](models::Llama& model, const std::string& dir) { models::load_adapter(model, dir); };
  }
}

std::string lora_export_command(const RunConfig& config, const std::string& adapter_dir) {
  const std::string base = config.model.path.empty() ? "BASE_MODEL_DIR" : config.model.path;
  return "qtune export --model " + base + " --adapter " + adapter_dir +
         (config.recipe == "qlora" ? " --base-nf4" : "") + " --format hf --out " + adapter_dir + "-merged";
}

std::string qat_quantize_command(const QuantSection& quant, const std::string& model_dir) {
  const quant::QATConfig config = qat_config(quant);
  std::string command = "qtune quantize --model " + model_dir + " --scheme " + quant.scheme;
  if (quant.scheme == "8da4w" || quant.scheme == "int4wo") {
    command += " --group-size " + std::to_string(quant::weight_spec(config.scheme).group_size);
  }
  return command + " --out " + model_dir + "-" + quant.scheme;
}

}  // namespace qtune::recipes
