#pragma once
// torch.nn.Embedding: a [num_embeddings, embedding_dim] table looked up by integer ids.
#include "engine/module.h"
#include "engine/rng.h"

namespace qtune::nn {

class Embedding : public Module {
 public:
  struct Options {
    DType dtype = DType::f32;
    Device device = Device::cpu();
    Generator* generator = nullptr;  // null: the default generator
  };
  // weight ~ N(0, 1), as torch initializes it.
  Embedding(int64_t num_embeddings, int64_t embedding_dim, const Options& options);
  Embedding(int64_t num_embeddings, int64_t embedding_dim) : Embedding(num_embeddings, embedding_dim, Options{}) {}

  // ids: [...] i32/i64 -> [..., embedding_dim]
  Tensor forward(const Tensor& ids) override;

  int64_t num_embeddings() const { return num_embeddings_; }
  int64_t embedding_dim() const { return embedding_dim_; }
  Tensor& weight() { return weight_; }

 private:
  int64_t num_embeddings_, embedding_dim_;
  Tensor weight_;  // [V, C]
};

}  // namespace qtune::nn
