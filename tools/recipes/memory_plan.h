#pragma once
// `qtune plan`: what one rank of a training run holds at its peak, predicted from the model's shapes without
// building it (docs/distributed.md, "Planning memory"). The parameters, gradients and optimizer state are
// counted exactly as FSDP lays them out (dist::FlatLayout, padding included); the activations from what each
// op of the forward keeps for backward, QAT's fake-quantized copies included.
#include <cstdint>
#include <string>
#include <vector>

#include "engine/dtype.h"
#include "models/llama_config.h"
#include "quant/qat_config.h"
#include "tools/recipes/recipe.h"

namespace qtune::recipes {

struct PlanInput {
  models::LlamaConfig model;
  Recipe recipe = Recipe::full;
  int ranks = 1;                  // 1: one process (no sharding)
  int64_t seq = 2048, batch = 1;  // per rank and micro-batch
  DType dtype = DType::bf16;      // parameters and activations
  int64_t lora_rank = 8;
  std::vector<std::string> lora_targets = {"q_proj", "v_proj"};
  double lora_dropout = 0;
  bool sgd = false;          // optimizer: AdamW (two f32 moments) or SGD with momentum (one)
  bool f32_masters = false;  // model.master_dtype=f32 with a bf16 model: an f32 copy of each trainable tensor
  bool activation_checkpointing = false;
  bool offload = false;  // dist.offload on GPU ranks: shards, their gradients and the optimizer in host memory
  quant::LinearScheme qat_scheme = quant::Int8DynActInt4Weight{};  // qat and qat_lora
};

struct PlanItem {
  std::string what;  // "parameters", "gradients", ...
  uint64_t bytes = 0;
  std::string detail;
  bool host = false;  // offloaded: in host memory, not on the rank's device
};

struct MemoryPlan {
  std::vector<PlanItem> items;
  uint64_t total = 0;  // the predicted peak of one rank (on its device when offloaded)
  uint64_t host = 0;   // what offloading keeps in host memory
};

// Throws naming the field for shapes a recipe cannot take (NF4 needs whole 64-value blocks).
MemoryPlan plan_memory(const PlanInput& input);

// The plan as a table, one line per item, and the total.
std::string format_plan(const PlanInput& input, const MemoryPlan& plan);

}  // namespace qtune::recipes
