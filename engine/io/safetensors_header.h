#pragma once
// Validation of a safetensors image (docs/numerics.md §8) without touching tensors: the part of the reader
// that sees untrusted bytes, kept free of the rest of the engine so the fuzz target can build it alone.
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qtune::io {

// Every dtype string the format defines. I16 has no qtune DType: such a tensor can be listed
// (`qtune info`) but not turned into a Tensor.
enum class StDType { F64, F32, F16, BF16, F8_E4M3, F8_E5M2, I64, I32, I16, I8, U8, BOOL };

std::string_view st_dtype_name(StDType t);                    // "BF16"
std::optional<StDType> st_dtype_from_name(std::string_view);  // nullopt for unknown strings
size_t st_dtype_size(StDType t);                              // bytes per element

struct TensorEntry {
  std::string name;
  StDType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets relative to the start of the data section
  uint64_t nbytes() const { return end - begin; }
};

// The largest header the reader accepts, as the reference implementation does.
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

struct SafetensorsHeader {
  std::vector<TensorEntry> entries;  // sorted by data offset
  std::map<std::string, std::string> metadata;
  uint64_t data_offset = 0;  // 8 + header length: where the data section starts in the image
  uint64_t data_size = 0;
};

// Validates a whole file image: header length, UTF-8, JSON, duplicate keys, entry fields, dtypes,
// byte sizes (overflow-checked), offsets tiling the data section exactly. Throws qtune::Error
// "<label>: <rule broken>" on the first violation; offsets are never used before they are checked.
SafetensorsHeader parse_safetensors_header(std::span<const std::byte> image, const std::string& label);

}  // namespace qtune::io
