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
#include <limits>
#include <memory>
#include <string>

#include "models/llama.h"
#include "tools/recipes/hooks.h"
#include "tools/recipes/run_config.h"

namespace qtune::recipes {

struct TrainResult {
  int64_t steps = 0;         // the run's total optimizer steps
  int64_t start_step = 0;    // where this call began (the checkpoint's step when resumed)
  double train_seconds = 0;  // wall time of this call's steps
  double final_loss = 0;
  double final_eval_loss = std::numeric_limits<double>::quiet_NaN();  // NaN without eval data
  std::string final_dir;                                              // output_dir/final
  int rank = 0, ranks = 1;               // this process in a sharded run (rank 0 wrote output_dir and reports)
  std::shared_ptr<models::Llama> model;  // the trained model; null in a sharded run (final_dir holds it)
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
