#pragma once
// Streaming GGUF v3 writer (docs/numerics.md §8): the header (metadata, then each tensor's name, dims, type and
// offset) is written from the specs, then each tensor's bytes as the caller produces them, each padded to the
// alignment, so a model is written one tensor in memory at a time. Atomic like every qtune file write.
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "engine/io/atomic_file.h"
#include "engine/io/ggml_type.h"
#include "engine/io/gguf_value.h"

namespace qtune::io {

struct GgufTensorSpec {
  std::string name;
  GgmlType type = GgmlType::f32;
  std::vector<int64_t> shape;  // outermost first (qtune's order); the file stores it innermost first
};

class GgufWriter {
 public:
  // Validates the keys (unique, non-empty), the names (unique, at most 63 bytes) and shapes (1 to 4 dims, rows
  // a whole number of the type's blocks), and writes the header; throws naming `path`. general.alignment in
  // `metadata`, when present, must be a u32 power of two and sets the alignment (default 32).
  GgufWriter(const std::string& path, const GgufMetadata& metadata, std::vector<GgufTensorSpec> specs);

  // The next tensor's bytes, in the order of the specs: exactly its size (checked).
  void write(std::span<const std::byte> bytes);
  // Every tensor written: fsync and rename into place. Without it the target is untouched.
  void commit();

  // Bytes of a tensor of this spec.
  static uint64_t tensor_bytes(const GgufTensorSpec& spec);

 private:
  void pad_to_alignment();

  std::string path_;
  std::vector<GgufTensorSpec> specs_;
  uint32_t alignment_;
  uint64_t written_ = 0;  // bytes of the file so far
  size_t next_ = 0;
  AtomicFile out_;
};

}  // namespace qtune::io
