#include "quant/fake_quantized_embedding.h"

#include "ops/embedding.h"
#include "quant/qat_fake_quantize.h"

namespace qtune::quant {

FakeQuantizedEmbedding::FakeQuantizedEmbedding(nn::Embedding& embedding, const EmbeddingInt4& scheme,
                                               int64_t fake_quant_after_n_steps)
    : Module("FakeQuantizedEmbedding"),
      scheme_(scheme),
      after_n_steps_(fake_quant_after_n_steps),
      weight_(embedding.weight()) {
  register_parameter("weight", &weight_, weight_.requires_grad());
}

Tensor FakeQuantizedEmbedding::forward(const Tensor& ids) {
  if (!fake_quant_active()) return ops::embedding(weight_, ids);
  return ops::embedding(fake_quantize(weight_, weight_spec(scheme_)), ids);
}

}  // namespace qtune::quant
