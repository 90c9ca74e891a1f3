#pragma once
// What the training loop (trainer.h) reports and where recipes plug into it: the step metrics it hands
// out and the hooks it calls. Its own header, so that the pieces the loop calls (metrics, progress, the
// model passes) need not include the loop.
#include <cstdint>
#include <functional>
#include <string>

#include "models/llama.h"
#include "models/tensor_reader.h"

namespace qtune::recipes {

struct StepMetrics {
  int64_t step = 0;  // 1-based optimizer step just taken
  int64_t total_steps = 0;
  double loss = 0, lr = 0, grad_norm = 0, tokens_per_s = 0, elapsed_s = 0;
  uint64_t peak_mem_bytes = 0;
};

struct TrainHooks {
  // Applied to the freshly built/loaded model before the optimizer is made (QAT prepare, LoRA, ...).
  // On resume it runs on the model before the checkpoint's weights (saved after it) are loaded in.
  std::function<void(models::Llama&)> prepare_model;
  // Called before each step's first forward with the optimizer steps taken so far (QAT's
  // fake_quant_after_n_steps switch).
  std::function<void(models::Llama&, int64_t steps_done)> before_step;
  // How checkpoints and final/ store the weights, and how resume restores them. Unset: the whole model
  // as an HF directory (models::save_llama), restored into a model built from the checkpoint's config.
  // Set (the LoRA recipes store adapter files): resume builds the model as a fresh run does (the frozen
  // base from model.path or model.config), runs prepare_model, then load_weights(model, checkpoint_dir).
  // save_weights reads each tensor it writes through `read` (models/tensor_reader.h: under FSDP it gathers).
  std::function<void(models::Llama&, const std::string& dir, const models::TensorReader& read)> save_weights;
  std::function<void(models::Llama&, const std::string& dir)> load_weights;
  // Called after every step (the CLI draws its progress line here).
  std::function<void(const StepMetrics&)> on_step;
  std::function<void(int64_t step, double eval_loss)> on_eval;
  // Remarks for the user: what was resumed, how much data there is, lines skipped, checkpoints saved.
  std::function<void(const std::string&)> on_note;
};

}  // namespace qtune::recipes
