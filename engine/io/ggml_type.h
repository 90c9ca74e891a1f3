#pragma once
// ggml's tensor types as GGUF files name them (docs/numerics.md §8): the id stored in a tensor info, and for
// the types qtune knows the layout of, the block size (elements per block along the innermost dimension) and
// the bytes per block, which give every tensor's byte size. Ids ggml has retired or that qtune has no layout
// for are still named, so an error can say what the file holds.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace qtune::io {

enum class GgmlType : uint32_t {
  f32 = 0,
  f16 = 1,
  q4_0 = 2,
  q4_1 = 3,
  q5_0 = 6,
  q5_1 = 7,
  q8_0 = 8,
  q8_1 = 9,
  q2_k = 10,
  q3_k = 11,
  q4_k = 12,
  q5_k = 13,
  q6_k = 14,
  q8_k = 15,
  i8 = 24,
  i16 = 25,
  i32 = 26,
  i64 = 27,
  f64 = 28,
  bf16 = 30,
};

struct GgmlTypeLayout {
  int64_t block = 1;        // elements per block
  int64_t block_bytes = 0;  // bytes per block
};

// "Q4_0", "BF16", ... for any id ggml has defined; "type <id>" for others.
std::string ggml_type_name(uint32_t id);
inline std::string ggml_type_name(GgmlType t) { return ggml_type_name(static_cast<uint32_t>(t)); }
// The type of a known id whose layout qtune has; nullopt otherwise (a retired or IQ/TQ/MX type).
std::optional<GgmlType> ggml_type_from_id(uint32_t id);
// "q4_0" -> GgmlType::q4_0 (the names as ggml prints them, any case); nullopt for others.
std::optional<GgmlType> ggml_type_from_name(std::string_view name);
GgmlTypeLayout ggml_type_layout(GgmlType t);
// Whether t stores blocks of codes with scales (Q4_0, Q8_0, the K-quants, ...), not plain numbers (F32, F16, BF16,
// the integer types).
bool is_quantized_type(GgmlType t);
// Bytes of a row of `elements` values (a multiple of the block size: checked by the callers that read files).
uint64_t ggml_row_bytes(GgmlType t, uint64_t elements);

}  // namespace qtune::io
