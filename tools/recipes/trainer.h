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
  std::function<void(models::Llama&)> prepare_model;
  // Applied to the model before the final save (QAT convert, LoRA merge, ...).
  std::function<void(models::Llama&)> finalize_model;
  // Called after every step (the CLI draws its progress line here).
  std::function<void(const StepMetrics&)> on_step;
  std::function<void(int64_t step, double eval_loss)> on_eval;
};

struct TrainResult {
  int64_t steps = 0;
  double final_loss = 0;
  double final_eval_loss = 0;  // NaN without eval data
  std::string final_dir;       // output_dir/final
  std::shared_ptr<models::Llama> model;
};

// Runs the whole recipe. With config.train.resume, continues from the newest complete checkpoint in
// output_dir (an Error when its config differs from `config` in anything but train.resume/steps... see
// trainer.cpp); the losses then equal an uninterrupted run's bit for bit.
TrainResult train(const RunConfig& config, const TrainHooks& hooks = {});

}  // namespace qtune::recipes
