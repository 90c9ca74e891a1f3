// `qtune plan --model DIR|CONFIG --recipe R --nproc N --seq T --batch B [--dtype] [--scheme]`: each rank's peak memory
// for a training run, predicted from the model's config.json alone (tools/recipes/memory_plan.h).
#include <memory>
#include <string>
#include <vector>

#include <fmt/core.h>

#include "engine/check.h"
#include "models/llama_config.h"
#include "qtune/commands.h"
#include "quant/qat_config.h"
#include "tools/recipes/memory_plan.h"

namespace qtune::cli {
namespace {

struct PlanArgs {
  std::string model, recipe = "full", dtype = "bf16", master_dtype;
  int nproc = 1;
  int64_t seq = 2048, batch = 1, lora_rank = 8;
  std::vector<std::string> lora_targets = {"q_proj", "v_proj"};
  double lora_dropout = 0;
  bool activation_checkpointing = false, sgd = false, offload = false;
  std::string scheme = "8da4w";
  int64_t group_size = 0;
};

int plan(const PlanArgs& args) {
  recipes::PlanInput in;
  in.model = models::load_llama_config(args.model, /*check_fits=*/false);  // planned, not loaded
  in.recipe = recipes::parse_recipe(args.recipe);
  in.ranks = args.nproc;
  in.seq = args.seq;
  in.batch = args.batch;
  in.dtype = dtype_from_name(args.dtype);
  in.lora_rank = args.lora_rank;
  in.lora_targets = args.lora_targets;
  in.lora_dropout = args.lora_dropout;
  in.activation_checkpointing = args.activation_checkpointing;
  in.offload = args.offload;
  in.sgd = args.sgd;
  QTUNE_CHECK(args.master_dtype.empty() || args.master_dtype == "f32" || args.master_dtype == args.dtype,
              "qtune plan: --master-dtype must be f32 or the model's --dtype (", args.dtype, "), got ",
              args.master_dtype);
  in.f32_masters = args.master_dtype == "f32";
  in.qat_scheme = quant::parse_linear_scheme(args.scheme, args.group_size);
  fmt::print("{}", recipes::format_plan(in, recipes::plan_memory(in)));
  return 0;
}

}  // namespace

void add_plan_command(CLI::App& app, int& status) {
  auto* cmd = app.add_subcommand(
      "plan", "Predict each rank's peak memory for a run: qtune plan --model DIR --recipe qlora --nproc 2 --seq 2048");
  auto args = std::make_shared<PlanArgs>();
  cmd->add_option("--model", args->model, "an HF model directory or its config.json")->required();
  cmd->add_option("--recipe", args->recipe, "full, qat, lora, qlora or qat_lora")->capture_default_str();
  cmd->add_option("--nproc", args->nproc, "FSDP ranks (1: one process)")
      ->capture_default_str()
      ->check(CLI::Range(1, 65536));
  cmd->add_option("--seq", args->seq, "tokens per sequence")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--batch", args->batch, "sequences per rank and micro-batch")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--dtype", args->dtype, "parameters and activations: f32 or bf16")->capture_default_str();
  cmd->add_option("--master-dtype", args->master_dtype,
                  "f32 with --dtype bf16: mixed precision, f32 masters in the optimizer (model.master_dtype)");
  cmd->add_option("--lora-rank", args->lora_rank, "LoRA rank (LoRA recipes)")->capture_default_str();
  cmd->add_option("--lora-targets", args->lora_targets, "projections with adapters (LoRA recipes)")->delimiter(',');
  cmd->add_option("--lora-dropout", args->lora_dropout, "LoRA dropout (its masked inputs are kept)");
  cmd->add_flag("--activation-checkpointing", args->activation_checkpointing, "keep only each layer's input");
  cmd->add_flag("--sgd", args->sgd, "SGD with momentum instead of AdamW");
  cmd->add_flag("--offload", args->offload,
                "GPU ranks with dist.offload: shards, their gradients and the optimizer state in host memory");
  cmd->add_option("--scheme", args->scheme, "QAT scheme (qat, qat_lora): 8da4w, int4wo, q4_0 or q8_0")
      ->capture_default_str();
  cmd->add_option("--group-size", args->group_size, "QAT weights per scale (8da4w, int4wo; 0: the scheme's default)")
      ->capture_default_str();
  cmd->callback([args, &status] { status = plan(*args); });
}

}  // namespace qtune::cli
