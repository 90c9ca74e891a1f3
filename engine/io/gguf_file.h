#pragma once
// GGUF files (llama.cpp's container, docs/numerics.md §8): open() memory-maps the file and validates it whole
// (gguf_header.h) before any tensor is touched; tensors are read as views of the mapping or dequantized to f32.
#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "engine/io/gguf_header.h"
#include "engine/tensor.h"

namespace qtune::io {

// Decodes `elements` values of type `type` (whole blocks) from `src` into `dst`, as llama.cpp dequantizes them: the
// decoder behind GgufFile::dequantize, for blocks held elsewhere (quant::FrozenGgmlLinear).
void dequantize_ggml(GgmlType type, const std::byte* src, float* dst, int64_t elements);

class GgufFile {
 public:
  // Maps and validates `path`; throws qtune::Error "<path>: <rule broken>".
  static GgufFile open(const std::string& path);
  // Validates an in-memory image (tests); `bytes` must outlive the object.
  static GgufFile parse(std::span<const std::byte> bytes, std::string label);

  const std::string& path() const { return label_; }
  const GgufHeader& header() const { return header_; }
  const GgufMetadata& metadata() const { return header_.metadata; }
  const std::vector<GgufTensorInfo>& tensors() const { return header_.tensors; }
  const GgufValue* find(std::string_view key) const { return find_gguf_value(header_.metadata, key); }
  const GgufValue& at(std::string_view key) const;  // throws naming the file and key
  const GgufTensorInfo* find_tensor(std::string_view name) const;
  const GgufTensorInfo& tensor_info(std::string_view name) const;  // throws naming the file and tensor

  std::span<const std::byte> bytes(const GgufTensorInfo& t) const;
  // The tensor in qtune's shape order (outermost first) as f32: F32, F16, BF16 widened, Q8_0, Q5_0, Q4_0, Q4_K, Q5_K
  // and Q6_K (what llama-quantize's Q4_K_M files hold) dequantized as llama.cpp does. An Error naming the tensor and
  // its type for the others.
  Tensor dequantize(const GgufTensorInfo& t) const;
  // Whether dequantize() reads type t.
  static bool can_dequantize(GgmlType t);
  // Drops the tensor's mapped pages from memory (after a loader has consumed them).
  void release(const GgufTensorInfo& t) const;

 private:
  GgufFile() = default;
  std::string label_;
  std::shared_ptr<const void> mapping_;
  std::span<const std::byte> image_;
  GgufHeader header_;
};

}  // namespace qtune::io
