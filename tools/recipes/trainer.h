#pragma once
// The training loop shared by every `qtune run` recipe (full here; lora, qlora, qat, qat_lora plug in
// through `prepare_model`): data, optimizer, schedule, clipping, accumulation, eval, metrics,
// progress, checkpoints and bit-identical resume.
//
// Output directory layout:
//   config.json                 the resolved RunConfig (run_config_to_json)
//   metrics.jsonl               one object per logged step: step, loss, lr, grad_norm, tokens_per_s,
//                               peak_mem_bytes, elapsed_s; eval lines: step, eval_loss, eval_perplexity
//   checkpoints/step_<N>/       HF model directory (config.json, model.safetensors, tokenizer files)
//                               + trainer_state.json (step, data position, RNG, schedule, config)
//                               + optimizer.safetensors (optimizer state tensors)
//   final/                      the final model (HF directory, loadable by `qtune generate/eval`)
// A checkpoint directory is written under a temporary name and renamed when complete, so a run killed
// while saving leaves the previous checkpoint as the newest complete one.
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>

#include "models/llama.h"
#include "tools/recipes/run_config.h"

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
  std::function<void(models::Llama&, const std::string&dir)> save_weights, load_weights;
  // Applied to the model before the final save.
  std::function<void(models::Llama&)> finalize_model;
  // Called after every step (the CLI draws its progress line here).
  std::function<void(const StepMetrics&)> on_step;
  std::function<void(int64_t step, double eval_loss)> on_eval;
  // Remarks for the user: what was resumed, how much data there is, lines skipped, checkpoints saved.
  std::function<void(const std::string&)> on_note;
};

struct TrainResult {
  int64_t steps = 0;         // the run's total optimizer steps
  int64_t start_step = 0;    // where this call began (the checkpoint's step when resumed)
  double train_seconds = 0;  // wall time of this call's steps
  double final_loss = 0;
  double final_eval_loss = std::numeric_limits<double>::quiet_NaN();  // NaN without eval data
  std::string final_dir;                                              // output_dir/final
  std::shared_ptr<models::Llama> model;
};

// Runs the whole recipe. A fresh run refuses an output_dir that already holds one (metrics.jsonl or
// checkpoints/). With config.train.resume, continues from the newest complete checkpoint in output_dir
// (an Error when there is none, or when its config differs in what a step computes: resume_check.h);
// the losses then equal an uninterrupted run's bit for bit.
// Steps: train.steps, or ceil(train.epochs * batches per epoch / train.grad_accum). Each step takes
// grad_accum micro-batches whose losses are scaled by 1/grad_accum before backward, clips the global
// gradient norm, and sets the lr from the schedule (lr_at(step - 1)). A non-finite loss or gradient
// norm stops the run with an Error. Eval runs every train.eval_every steps and at the end (the mean
// token loss over eval batches, without autograd, in eval mode). Checkpoints are saved every
// train.save_every steps and at the end; output_dir/final is written last.
TrainResult train(const RunConfig& config, const TrainHooks& hooks = {});

}  // namespace qtune::recipes
