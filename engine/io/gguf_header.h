#pragma once
// Validation of a GGUF image (docs/numerics.md §8) without touching tensor data: the part of the GGUF reader
// that sees untrusted bytes, kept free of the rest of the engine so the fuzz target builds it alone. Every
// count, length and offset is checked against the bytes that remain before it is used.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "engine/io/ggml_type.h"
#include "engine/io/gguf_value.h"

namespace qtune::io {

inline constexpr uint32_t kGgufDefaultAlignment = 32;
inline constexpr size_t kGgufMaxNameBytes = 63;  // ggml keeps names in 64 bytes with the terminating NUL
inline constexpr int kGgufMaxDims = 4;
inline constexpr uint64_t kGgufMaxArrayItems = 16'777'216;  // per metadata array

struct GgufTensorInfo {
  std::string name;
  GgmlType type = GgmlType::f32;
  std::vector<int64_t> dims;  // innermost first, as the file stores them (ggml's ne[])
  uint64_t offset = 0;        // from the start of the data section
  uint64_t nbytes = 0;
  int64_t elements() const;
  // dims outermost first: the shape of the same tensor in qtune / safetensors / numpy order.
  std::vector<int64_t> shape() const { return {dims.rbegin(), dims.rend()}; }
};

struct GgufHeader {
  uint32_t version = 3;
  GgufMetadata metadata;                // file order; keys unique
  std::vector<GgufTensorInfo> tensors;  // file order; names unique
  uint32_t alignment = kGgufDefaultAlignment;
  uint64_t data_offset = 0;  // where the data section starts in the image
};

// Whether `path` is a regular file that starts with GGUF's magic: how every command tells a GGUF model from a
// model directory or a tokenizer file.
bool is_gguf_file(const std::string& path);

// Validates a whole file image: magic, version (2 or 3), counts, key and name strings (UTF-8, unique, names of
// at most 63 bytes), value types (no nested arrays, bools 0 or 1, arrays of at most kGgufMaxArrayItems),
// general.alignment (a u32 power of two), tensor dims (1 to 4, each at least 1, element count overflow-checked), types
// (ones qtune has a layout for), rows a whole number of blocks, offsets aligned and inside the file, no two tensors
// overlapping. Throws qtune::Error
// "<label>: <rule broken>" on the first violation.
GgufHeader parse_gguf_header(std::span<const std::byte> image, const std::string& label);

}  // namespace qtune::io
