#include "tools/recipes/model_passes.h"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <utility>
#include <variant>
#include <vector>

#include "engine/io/gguf_file.h"
#include "models/gguf_export.h"
#include "models/gguf_import.h"
#include "models/lora.h"
#include "models/peft_adapter.h"
#include "models/quantize_model.h"
#include "quant/float8.h"
#include "quant/float8_frozen_linear.h"
#include "quant/frozen_ggml_linear.h"
#include "quant/frozen_nf4_linear.h"
#include "quant/qat.h"

namespace qtune::recipes {

quant::QATConfig qat_config(const QuantSection& quant) {
  quant::QATConfig config{quant.scheme, quant::QATStep::Prepare};
  config.fake_quant_after_n_steps = quant.fake_quant_after_n_steps;
  return config;
}

quant::ModelQuantization qlora_base(const RunConfig& config) { return models::qlora_base(lora_config(config)); }

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
  if (fake_quantizes(config.recipe)) {
    const quant::QATConfig qat_cfg = qat_config(config.quant);
    const int64_t n = quant::quantize_(model, qat_cfg);
    std::string text = "QAT: " + std::to_string(n) + " linears fake-quantized with " +
                       quant::scheme_name(qat_cfg.scheme) + " (" +
                       std::to_string(quant::group_size_of(qat_cfg.scheme)) + " weights per scale)";
    if (qat_cfg.fake_quant_after_n_steps > 0) {
      text += ", switched on after step " + std::to_string(qat_cfg.fake_quant_after_n_steps);
    }
    tell(text);
  }
  if (config.fp8.recipe) {
    const auto fp8 = quant::Float8LinearConfig::from_recipe(*config.fp8.recipe);
    const std::string fp8_name(quant::float8_recipe_name(*config.fp8.recipe));
    if (trains_adapters(config.recipe)) {
      // Frozen under the adapters: each weight stored once in e4m3 (the loader may have done it already).
      quant::convert_to_float8_frozen(model, fp8);
      int64_t n = 0;
      for (const auto& [fqn, m] : model.named_modules()) n += dynamic_cast<quant::Float8FrozenLinear*>(m) != nullptr;
      tell("float8: " + std::to_string(n) + " frozen linears stored in e4m3 for the " + fp8_name +
           " recipe (the output head and dims not a multiple of 16 stay high precision)");
    } else {
      const int64_t n = quant::convert_to_float8(model, fp8);
      tell("float8: " + std::to_string(n) + " linears converted to the " + fp8_name +
           " recipe (the output head and dims not a multiple of 16 stay high precision)");
    }
  }
  if (config.recipe == Recipe::qlora) {
    // Projections the loader already stored in NF4 are FrozenNF4Linear, which the filter passes over. The
    // head stays full precision unless it carries an adapter (docs/numerics.md §4).
    const quant::ModelQuantization base = qlora_base(config);
    quant::convert_to_nf4(model, [base](const Module&, std::string_view fqn) {
      return models::quantized_part(base, fqn) == models::QuantizedPart::linear;
    });
    int64_t nf4 = 0, ggml = 0;
    for (const auto& [fqn, m] : model.named_modules()) {
      nf4 += dynamic_cast<quant::FrozenNF4Linear*>(m) != nullptr;
      ggml += dynamic_cast<quant::FrozenGgmlLinear*>(m) != nullptr;
    }
    tell("QLoRA: " + std::to_string(nf4) + " frozen linears stored in NF4" +
         (ggml ? ", " + std::to_string(ggml) + " kept in the GGUF file's blocks" : ""));
  }
  if (trains_adapters(config.recipe)) {
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
  if (config.recipe == Recipe::full && !config.fp8.recipe) return;
  const auto note = hooks.on_note;
  const auto tell = [note](const std::string& text) {
    if (note) note(text);
  };
  auto then = std::move(hooks.prepare_model);
  hooks.prepare_model = [config, tell, then](models::Llama& model) {
    apply_passes(config, model, tell);
    if (then) then(model);
  };
  if (fake_quantizes(config.recipe)) {
    auto before = std::move(hooks.before_step);
    hooks.before_step = [before](models::Llama& model, int64_t steps_done) {
      quant::set_qat_step(model, steps_done);
      // A LoRA wrapper holds its base outside the module tree (the base keeps its HF parameter names).
      for (auto& [fqn, lora] : models::lora_modules(model)) quant::set_qat_step(lora->base(), steps_done);
      if (before) before(model, steps_done);
    };
  }
  if (trains_adapters(config.recipe)) {
    const models::LoraConfig lora = lora_config(config);
    const std::string base = base_model_name(config);
    hooks.save_weights = [lora, base](models::Llama& model, const std::string& dir, const models::TensorReader& read) {
      models::save_adapter(model, lora, dir, base, read);
    };
    hooks.load_weights = [](models::Llama& model, const std::string& dir) { models::load_adapter(model, dir); };
  }
}

std::string lora_export_command(const RunConfig& config, const std::string& adapter_dir) {
  const std::string base = config.model.path.empty() ? "BASE_MODEL_DIR" : config.model.path;
  // A quantized GGUF base trained as its own blocks: merged into their values, back into a GGUF file of the base's
  // type when qtune writes it, else q8_0 (nothing coarser than the base).
  if (config.recipe == Recipe::qlora && io::is_gguf_file(base)) {
    const io::GgufFile file = io::GgufFile::open(base);
    if (models::gguf_has_quantized_linears(file)) {
      models::GgufFileType type = models::GgufFileType::q8_0;
      const io::GgufValue* file_type = file.find("general.file_type");
      for (const auto t : {models::GgufFileType::q4_0, models::GgufFileType::q4_k_m})
        if (file_type && file_type->to_int("general.file_type") == static_cast<int64_t>(t)) type = t;
      return "qtune export --model " + base + " --adapter " + adapter_dir + " --format gguf --type " +
             std::string(models::gguf_file_type_name(type)) + " --out " + adapter_dir + "-merged.gguf";
    }
  }
  return "qtune export --model " + base + " --adapter " + adapter_dir +
         (config.recipe == Recipe::qlora ? " --base-nf4" : "") + " --format hf --out " + adapter_dir + "-merged";
}

std::string qat_quantize_command(const QuantSection& quant, const std::string& model_dir) {
  // The weights' scheme: a ggml_* run is stored in its plain ggml format.
  const std::string name = quant::weight_scheme_name(quant::stored_weight_scheme(quant.scheme));
  std::string command = "qtune quantize --model " + model_dir + " --scheme " + name;
  if (quant::takes_group_size(quant.scheme))
    command += " --group-size " + std::to_string(quant::group_size_of(quant.scheme));
  return command + " --out " + model_dir + "-" + name;
}

std::optional<std::string> gguf_export_command(const RunConfig& config, const std::string& final_dir) {
  const std::string name = quant::scheme_name(config.quant.scheme);
  if (name != "q4_0" && name != "q8_0" && name != "ggml_q4_0" && name != "ggml_q8_0") return std::nullopt;
  const std::string type = name.ends_with("q8_0") ? "q8_0" : "q4_0";
  const std::string out = " --format gguf --type " + type + " --out " + final_dir + "-" + type + ".gguf";
  if (config.recipe == Recipe::qat) return "qtune export --model " + final_dir + out;
  if (config.recipe == Recipe::qat_lora) {
    const std::string base = config.model.path.empty() ? "BASE_MODEL_DIR" : config.model.path;
    return "qtune export --model " + base + " --adapter " + final_dir + out;
  }
  return std::nullopt;
}

}  // namespace qtune::recipes
