#include "ops/nn/embedding.h"

#include "engine/autograd.h"
#include "engine/check.h"
#include "ops/embedding.h"

namespace qtune::nn {

Embedding::Embedding(int64_t num_embeddings, int64_t embedding_dim, const Options& options)
    : Module("Embedding"), num_embeddings_(num_embeddings), embedding_dim_(embedding_dim) {
  QTUNE_CHECK(num_embeddings > 0 && embedding_dim > 0, "Embedding: sizes must be positive, got ", num_embeddings, " x ",
              embedding_dim);
  NoGradGuard no_grad;
  weight_ = parameter_init_enabled()
                ? randn({num_embeddings, embedding_dim}, options.dtype, options.device, options.generator)
                : Tensor::empty({num_embeddings, embedding_dim}, options.dtype, options.device);
  register_parameter("weight", &weight_);
}

Tensor Embedding::forward(const Tensor& ids) { return ops::embedding(weight_, ids); }

}  // namespace qtune::nn
