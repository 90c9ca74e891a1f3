#pragma once
// The model passes a run config asks for, as trainer hooks: QAT prepare (recipe qat) and float8
// conversion (fp8.recipe). The passes keep parameter names and tensors, so checkpoints, resume and final/
// stay ordinary float HF directories.
#include <string>

#include "quant/qat_config.h"
#include "tools/recipes/run_config.h"
#include "tools/recipes/trainer.h"

namespace qtune::recipes {

// The QAT prepare config of the quant section (scheme, group size, fake_quant_after_n_steps).
quant::QATConfig qat_config(const QuantSection& quant);

// Adds the config's passes to hooks.prepare_model (before any prepare_model already there) and, for QAT,
// a before_step that tells the fake quantizers the step. Reports what was converted through hooks.on_note.
// A plain full run leaves the hooks as they are.
void add_model_passes(const RunConfig& config, TrainHooks& hooks);

// The `qtune quantize` command that turns a QAT run's float model into the scheme it trained for.
std::string qat_quantize_command(const QuantSection& quant, const std::string& model_dir);

}  // namespace qtune::recipes
