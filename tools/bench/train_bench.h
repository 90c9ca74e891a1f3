#pragma once
// `qtune bench train`: full training steps (forward, backward, AdamW) of a randomly initialized Llama on
// the CPU or a GPU. Reports tokens/s, model GFLOP/s, model FLOP utilization (MFU) against the GEMM peak
// measured in the same run on the model's own GEMM shapes (on a GPU also against the H100/H200 dense bf16
// tensor-core rate), a per-phase breakdown and peak memory. On a GPU every phase ends with a synchronize,
// so its time is the GPU's.
#include <cstdint>
#include <string>

#include "models/llama_config.h"

namespace qtune::bench {

struct TrainBenchOptions {
  int steps = 5;   // timed steps; per-phase medians are reported
  int warmup = 1;  // untimed steps first (first-touch page faults, optimizer state, allocator cache)
  int64_t batch = 4, seq = 256;
  int64_t hidden = 768, layers = 12, heads = 12, ffn = 2048, vocab = 32000;
  int64_t kv_heads = 0;        // 0: as many as heads (no grouping)
  std::string dtype = "f32";   // the model's parameter and activation dtype: f32 or bf16
  std::string device = "cpu";  // cpu, cuda or cuda:N
  bool activation_checkpointing = false;
  // Quantized training, for the overhead over a plain step: every linear but lm_head trains through QAT
  // fake quantization (scheme name of quant::parse_linear_scheme; qat_group 0: the scheme's default), or
  // through float8 GEMMs (a quant::parse_float8_recipe name; emulated on CPU). Empty: plain.
  std::string qat;
  int64_t qat_group = 0;
  std::string fp8;
  bool tf32 = false;  // f32 GEMMs on TF32 inputs (cuda, f32 only; Backend::set_tf32)
  // Adapter fine-tuning: "lora" (a frozen base) or "qlora" (the base's projections in NF4), with rank-lora_rank
  // adapters (alpha 16) on all seven projections of every layer; only the adapters train. Empty: full training.
  std::string adapters;
  int64_t lora_rank = 8;
  bool f32_masters = false;  // mixed precision: AdamW updates f32 masters of the bf16 weights (model.master_dtype)
};

// Model FLOPs of one training step (forward + backward; the optimizer's elementwise work is not counted).
//   matmul:    6 * P * tokens, P = every linear weight, lm_head included, embedding lookup and norm weights
//              not (a lookup and a scale are no multiply-adds). Forward 2*P per token, backward 4*P
//              (input gradient and weight gradient). With adapters the base's weights take no gradient:
//              4 * P * tokens, plus 6 * A * tokens for A adapter weights.
//   attention: per layer and sequence, forward QK^T and PV are 2 * 2 * T^2 * (Hq*D) multiply-add FLOPs,
//              half of them under the causal mask, backward twice the forward: 3 * 2 * T^2 * Hq*D
//              = 12 * T^2/2 * Hq*D. Recomputation (activation checkpointing, the attention backward's
//              second look at the scores) is work the implementation chooses, not model FLOPs.
struct TrainFlops {
  double linear_params = 0;   // P
  double adapter_params = 0;  // A
  double matmul = 0, attention = 0;
  double forward = 0;  // the forward's share: 2 * (P + A) * tokens + attention / 3
  double total() const { return matmul + attention; }
};
// lora_rank: adapters of that rank on the seven projections of every layer (0: full training).
TrainFlops train_step_flops(const models::LlamaConfig& config, int64_t batch, int64_t seq, int64_t lora_rank = 0);

// Prints the report to stdout; returns 0, or 1 when the options are invalid (the message goes to stderr).
int run_train_bench(const TrainBenchOptions& options);

}  // namespace qtune::bench
