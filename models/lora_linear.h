#pragma once
// LoRALinear (docs/numerics.md §4, torchtune's LoRALinear): a frozen base linear plus a trainable low-rank
// update, y = base(x) + (alpha / rank) * lora_B(lora_A(dropout(x))).
//
// Names: the base's own parameters and buffers are registered on this module under their own names, so
// a wrapped q_proj still reads `...q_proj.weight` (HF checkpoint IO is unchanged); the adapters are the
// children `lora_A` [rank, in] and `lora_B` [out, rank], so their names map one to one onto HF PEFT's
// `base_model.model.<module path>.lora_A.weight`.
#include <cstdint>
#include <vector>

#include "engine/module.h"
#include "engine/rng.h"  // Generator

namespace qtune::models {

struct LoRAOptions {
  int64_t rank = 8;
  double alpha = 16;
  // On the LoRA branch only, in training mode only. The masks come from the default generator, whose state
  // activation checkpointing restores before recomputing, so a recomputed layer draws the same masks.
  double dropout = 0;
  DType dtype = DType::f32;
  Device device = Device::cpu();
  Generator* init_generator = nullptr;  // draws lora_A (null: the default generator)
};

class LoRALinear : public Module {
 public:
  // `base` maps [..., in] -> [..., out] (nn::Linear, quant::FrozenNF4Linear, quant::FakeQuantizedLinear,
  // quant::Float8Linear, ...). lora_A ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming-uniform, a = sqrt(5)),
  // lora_B = 0, so a fresh LoRALinear computes exactly what its base does.
  LoRALinear(ModulePtr base, int64_t in_features, int64_t out_features, const LoRAOptions& options);

  // x: [..., in] -> [..., out]
  Tensor forward(const Tensor& x) override;

  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }
  int64_t rank() const { return rank_; }
  double alpha() const { return alpha_; }
  double scaling() const { return alpha_ / static_cast<double>(rank_); }
  double dropout() const { return dropout_; }
  Module& base() { return *base_; }
  const ModulePtr& base_ptr() const { return base_; }
  Tensor& lora_a();  // [rank, in]
  Tensor& lora_b();  // [out, rank]

 protected:
  void on_train_mode(bool on) override { base_->train(on); }

 private:
  int64_t in_features_, out_features_, rank_;
  double alpha_, dropout_;
  ModulePtr base_;                    // not a child: its tensors are registered below under their own names
  std::vector<Tensor> base_tensors_;  // handles sharing the base's tensors; sized once, addresses stable
  ModulePtr lora_A_, lora_B_;         // nn::Linear without bias
};

}  // namespace qtune::models
