#include "tools/recipes/model_passes.h"

#include <cstdint>
#include <utility>
#include <variant>

#include "quant/float8.h"
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

void add_model_passes(const RunConfig& config, TrainHooks& hooks) {
  const bool qat = config.recipe == "qat";
  const bool fp8 = !config.fp8.recipe.empty();
  if (!qat && !fp8) return;
  const auto note = hooks.on_note;
  const auto tell = [note](const std::string& text) {
    if (note) note(text);
  };
  auto then = std::move(hooks.prepare_model);
  hooks.prepare_model = [config, qat, tell, then](models::Llama& model) {
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
      const quant::Float8Recipe recipe = quant::parse_float8_recipe(config.fp8.recipe);
      const int64_t n = quant::convert_to_float8(model, quant::Float8LinearConfig::from_recipe(recipe));
      tell("float8: " + std::to_string(n) + " linears converted to the " + config.fp8.recipe +
           " recipe (the output head and dims not a multiple of 16 stay high precision)");
    }
    if (then) then(model);
  };
  if (qat) {
    auto before = std::move(hooks.before_step);
    hooks.before_step = [before](models::Llama& model, int64_t steps_done) {
      quant::set_qat_step(model, steps_done);
      if (before) before(model, steps_done);
    };
  }
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
