#include "quant/quantized_embedding.h"

#include <utility>
#include <vector>

#include "engine/check.h"

namespace qtune::quant {

QuantizedEmbedding::QuantizedEmbedding(const Tensor& weight, const EmbeddingInt4& scheme)
    : Module("QuantizedEmbedding"),
      num_embeddings_(weight.size(0)),
      embedding_dim_(weight.size(1)),
      packed_(pack_int4(weight, weight_spec(scheme))) {
  register_buffer("weight_int4", &packed_.codes);
  register_buffer("weight_scales", &packed_.scales);
}

QuantizedEmbedding::QuantizedEmbedding(PackedInt4 packed, const EmbeddingInt4& scheme)
    : Module("QuantizedEmbedding"),
      num_embeddings_(packed.codes.size(0)),
      embedding_dim_(packed.codes.size(1) * 2),
      packed_(std::move(packed)) {
  check_packed_int4(packed_, scheme.group_size, false, "QuantizedEmbedding");
  register_buffer("weight_int4", &packed_.codes);
  register_buffer("weight_scales", &packed_.scales);
}

Tensor QuantizedEmbedding::forward(const Tensor& ids) {
  QTUNE_CHECK(ids.dtype() == DType::i64 || ids.dtype() == DType::i32,
              "QuantizedEmbedding: ids must be i32 or i64, got ", dtype_name(ids.dtype()));
  const std::vector<int64_t> rows = ids.to_vector<int64_t>();
  for (size_t i = 0; i < rows.size(); ++i)
    QTUNE_CHECK(rows[i] >= 0 && rows[i] < num_embeddings_, "QuantizedEmbedding: id ", rows[i], " at position ", i,
                " is out of range for a vocabulary of V = ", num_embeddings_);
  Tensor out = Tensor::empty({ids.numel(), embedding_dim_}, packed_.dtype);
  dequantize_int4_rows(packed_, rows.data(), ids.numel(), out);
  Shape shape = ids.shape();
  shape.push_back(embedding_dim_);
  return out.view(shape);
}

}  // namespace qtune::quant
