#include "engine/io/gguf_file.h"

#include <cstring>

#include "engine/check.h"
#include "engine/io/mapped_file.h"
#include "engine/numerics/bf16.h"
#include "engine/numerics/f16.h"
#include "engine/numerics/ggml_blocks.h"
#include "engine/numerics/ggml_k_blocks.h"

namespace qtune::io {

GgufFile GgufFile::open(const std::string& path) {
  MappedFile mapped = map_file(path);
  GgufFile file = parse(mapped.bytes, path);
  file.mapping_ = std::move(mapped.mapping);
  return file;
}

GgufFile GgufFile::parse(std::span<const std::byte> bytes, std::string label) {
  GgufFile file;
  file.header_ = parse_gguf_header(bytes, label);
  file.label_ = std::move(label);
  file.image_ = bytes;
  return file;
}

const GgufValue& GgufFile::at(std::string_view key) const {
  const GgufValue* v = find(key);
  QTUNE_CHECK(v != nullptr, label_, ": no metadata key ", key);
  return *v;
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  for (const GgufTensorInfo& t : header_.tensors)
    if (t.name == name) return &t;
  return nullptr;
}

const GgufTensorInfo& GgufFile::tensor_info(std::string_view name) const {
  const GgufTensorInfo* t = find_tensor(name);
  QTUNE_CHECK(t != nullptr, label_, ": no tensor named ", name);
  return *t;
}

std::span<const std::byte> GgufFile::bytes(const GgufTensorInfo& t) const {
  return image_.subspan(static_cast<size_t>(header_.data_offset + t.offset), static_cast<size_t>(t.nbytes));
}

bool GgufFile::can_dequantize(GgmlType t) {
  return t == GgmlType::f32 || t == GgmlType::f16 || t == GgmlType::bf16 || t == GgmlType::q8_0 ||
         t == GgmlType::q4_0 || t == GgmlType::q5_0 || t == GgmlType::q4_k || t == GgmlType::q5_k ||
         t == GgmlType::q6_k;
}

namespace {

template <class Block>
void dequantize_blocks(const std::byte* src, float* dst, int64_t elements, int64_t block_elements,
                       void (*decode)(const Block&, float*)) {
  const int64_t blocks = elements / block_elements;
  for (int64_t b = 0; b < blocks; ++b) {
    Block block;  // copied out: a block in the file need not be aligned for its fields
    std::memcpy(&block, src + b * sizeof(Block), sizeof(Block));
    decode(block, dst + b * block_elements);
  }
}

template <class Bits>
void widen(const std::byte* src, float* dst, int64_t elements, float (*convert)(Bits)) {
  for (int64_t i = 0; i < elements; ++i) {
    Bits v;
    std::memcpy(&v, src + i * sizeof(Bits), sizeof(Bits));
    dst[i] = convert(v);
  }
}

}  // namespace

void dequantize_ggml(GgmlType type, const std::byte* src, float* dst, int64_t n) {
  switch (type) {
    case GgmlType::f32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      break;
    case GgmlType::f16:
      widen<uint16_t>(src, dst, n, numerics::f16_bits_to_f32);
      break;
    case GgmlType::bf16:
      widen<uint16_t>(src, dst, n, numerics::bf16_bits_to_f32);
      break;
    case GgmlType::q8_0:
      dequantize_blocks<numerics::BlockQ8_0>(src, dst, n, numerics::kGgmlBlock, numerics::dequantize_block_q8_0);
      break;
    case GgmlType::q4_0:
      dequantize_blocks<numerics::BlockQ4_0>(src, dst, n, numerics::kGgmlBlock, numerics::dequantize_block_q4_0);
      break;
    case GgmlType::q5_0:
      dequantize_blocks<numerics::BlockQ5_0>(src, dst, n, numerics::kGgmlBlock, numerics::dequantize_block_q5_0);
      break;
    case GgmlType::q5_k:
      dequantize_blocks<numerics::BlockQ5_K>(src, dst, n, numerics::kGgmlSuperBlock, numerics::dequantize_block_q5_K);
      break;
    case GgmlType::q4_k:
      dequantize_blocks<numerics::BlockQ4_K>(src, dst, n, numerics::kGgmlSuperBlock, numerics::dequantize_block_q4_K);
      break;
    case GgmlType::q6_k:
      dequantize_blocks<numerics::BlockQ6_K>(src, dst, n, numerics::kGgmlSuperBlock, numerics::dequantize_block_q6_K);
      break;
    default:
      QTUNE_FAIL("dequantize_ggml: qtune cannot dequantize ", ggml_type_name(type));
  }
}

Tensor GgufFile::dequantize(const GgufTensorInfo& t) const {
  QTUNE_CHECK(can_dequantize(t.type), label_, ": tensor ", t.name, " is ", ggml_type_name(t.type),
              ", which qtune cannot dequantize (it reads F32, F16, BF16, Q8_0, Q5_0, Q4_0, Q4_K, Q5_K and Q6_K)");
  Tensor out = Tensor::empty(t.shape(), DType::f32);
  dequantize_ggml(t.type, bytes(t).data(), out.data<float>(), t.elements());
  return out;
}

void GgufFile::release(const GgufTensorInfo& t) const {
  if (mapping_) release_pages(bytes(t));
}

}  // namespace qtune::io
