#pragma once
// How a writer reads the model tensors it saves: by default the tensors themselves; a sharded model's reader
// gathers each one whole from the ranks as the writer reaches it (models::ShardedLlama::consolidate).
#include <functional>

#include "engine/tensor.h"

namespace qtune::models {

// What a reader returns is valid until its next read (a sharded model may free it then): write it first.
using TensorReader = std::function<Tensor(const Tensor&)>;

// reader(t), or t itself for an empty reader.
inline Tensor read_tensor(const TensorReader& reader, const Tensor& t) { return reader ? reader(t) : t; }

}  // namespace qtune::models
