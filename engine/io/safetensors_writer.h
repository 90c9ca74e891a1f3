#pragma once
// Streaming safetensors writer: the header is written from the tensors' names, dtypes and shapes, then each
// tensor's bytes as the caller produces them, so a file larger than memory (a generated 1 B-parameter
// checkpoint) never needs all its tensors at once. Atomic like every qtune file write (atomic_file.h).
#include <cstddef>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/dtype.h"
#include "engine/io/atomic_file.h"
#include "engine/shape.h"
#include "engine/tensor.h"

namespace qtune::io {

struct TensorSpec {
  std::string name;
  DType dtype;
  Shape shape;
};

// A tensor produced when the writer reaches it: a file written from these holds one of them in memory at a time.
struct LazyTensor {
  TensorSpec spec;
  std::function<Tensor()> produce;
};

// Tensors already in memory as lazy ones; throws naming `where` for an undefined one.
std::vector<LazyTensor> lazy_tensors(const std::vector<std::pair<std::string, Tensor>>& tensors,
                                     const std::string& where);

class SafetensorsWriter {
 public:
  // Validates the names (unique, not "__metadata__") and writes the header; throws naming `path`.
  SafetensorsWriter(const std::string& path, std::vector<TensorSpec> specs,
                    const std::map<std::string, std::string>& metadata = {});

  // The next tensor in the order of the specs (any device or layout), checked against its spec.
  void write(const Tensor& tensor);
  // Every tensor written: fsync and rename into place. Without it the target is untouched.
  void commit();

 private:
  std::string path_;
  std::vector<TensorSpec> specs_;
  size_t next_ = 0;
  AtomicFile out_;
};

}  // namespace qtune::io
