#pragma once
// QAT's stand-in for nn::Embedding: rows looked up in fq(weight), the int4 per-group symmetric fake
// quantization along embedding_dim (EmbeddingInt4). The weight is the SAME tensor as the nn::Embedding's.
// Ids are never fake-quantized. Switches as FakeQuantizedLinear's (set_enabled, set_step).
#include "engine/module.h"
#include "ops/nn/embedding.h"
#include "quant/qat_config.h"

namespace qtune::quant {

class FakeQuantizedEmbedding : public Module {
 public:
  FakeQuantizedEmbedding(nn::Embedding& embedding, const EmbeddingInt4& scheme, int64_t fake_quant_after_n_steps = 0);

  // ids: [...] i32/i64 -> [..., embedding_dim]
  Tensor forward(const Tensor& ids) override;

  void set_enabled(bool on) { enabled_ = on; }
  bool enabled() const { return enabled_; }
  void set_step(int64_t step) { step_ = step; }
  bool fake_quant_active() const { return enabled_ && step_ >= after_n_steps_; }

  int64_t num_embeddings() const { return weight_.size(0); }
  int64_t embedding_dim() const { return weight_.size(1); }
  const EmbeddingInt4& scheme() const { return scheme_; }
  Tensor& weight() { return weight_; }

 private:
  EmbeddingInt4 scheme_;
  int64_t after_n_steps_;
  int64_t step_ = 0;
  bool enabled_ = true;
  Tensor weight_;  // [V, C]
};

}  // namespace qtune::quant
