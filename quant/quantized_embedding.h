#pragma once
// The converted int4 embedding (QATStep::Convert with EmbeddingInt4): the table packed two codes per byte
// with an f32 scale per group; looked-up rows are dequantized on the fly. Equals the prepared
// FakeQuantizedEmbedding bit for bit. Inference only; CPU.
#include "engine/module.h"
#include "quant/qat_config.h"
#include "quant/qat_int4_weights.h"

namespace qtune::quant {

class QuantizedEmbedding : public Module {
 public:
  // weight: [V, C] (CPU); C must be a multiple of the group size.
  QuantizedEmbedding(const Tensor& weight, const EmbeddingInt4& scheme);
  // An already packed table (a quantized checkpoint being loaded): codes [V, C/2], scales [V, C/group].
  QuantizedEmbedding(PackedInt4 packed, const EmbeddingInt4& scheme);

  // ids: [...] i32/i64, each in [0, V) -> [..., C] in the original weight's dtype
  Tensor forward(const Tensor& ids) override;

  int64_t num_embeddings() const { return num_embeddings_; }
  int64_t embedding_dim() const { return embedding_dim_; }
  const PackedInt4& packed_weight() const { return packed_; }

 private:
  int64_t num_embeddings_, embedding_dim_;
  PackedInt4 packed_;
};

}  // namespace qtune::quant
