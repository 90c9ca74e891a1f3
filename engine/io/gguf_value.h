#pragma once
// A GGUF metadata value (docs/numerics.md §8): one of the format's twelve scalar types, a string, or an array
// of one of them. Arrays of arrays, which no llama.cpp key uses, are refused by the reader and cannot be built.
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace qtune::io {

enum class GgufType : uint32_t {
  u8 = 0,
  i8 = 1,
  u16 = 2,
  i16 = 3,
  u32 = 4,
  i32 = 5,
  f32 = 6,
  boolean = 7,
  string = 8,
  array = 9,
  u64 = 10,
  i64 = 11,
  f64 = 12,
};

std::string_view gguf_type_name(GgufType t);  // "u32", "string", ...
// Bytes of a scalar of type t in a file (0 for string and array, whose size depends on the value).
size_t gguf_scalar_bytes(GgufType t);

class GgufValue {
 public:
  GgufValue() = default;
  static GgufValue u32(uint32_t v) { return scalar(GgufType::u32, v); }
  static GgufValue i32(int32_t v) { return scalar(GgufType::i32, static_cast<uint32_t>(v)); }
  static GgufValue u64(uint64_t v) { return scalar(GgufType::u64, v); }
  static GgufValue f32(float v);
  static GgufValue f64(double v);
  static GgufValue boolean(bool v) { return scalar(GgufType::boolean, v ? 1 : 0); }
  static GgufValue string(std::string v);
  static GgufValue strings(std::vector<std::string> items);
  static GgufValue f32s(const std::vector<float>& items);
  static GgufValue i32s(const std::vector<int32_t>& items);
  // A scalar from its little-endian bits, zero-extended (what the reader holds); `type` is not string/array.
  static GgufValue scalar(GgufType type, uint64_t bits);
  // An array of scalars or strings; every item must have `item_type`.
  static GgufValue array(GgufType item_type, std::vector<GgufValue> items);

  GgufType type() const { return type_; }
  GgufType item_type() const { return item_type_; }  // arrays only
  uint64_t bits() const { return bits_; }
  const std::string& text() const { return text_; }               // strings
  const std::vector<GgufValue>& items() const { return items_; }  // arrays

  // The value as the C++ type a caller wants; each throws an Error naming `key` when the value's type does not
  // convert exactly (an integer out of range, a string where a number is wanted, ...).
  int64_t to_int(std::string_view key) const;    // any integer type that fits in int64
  double to_double(std::string_view key) const;  // f32, f64 or an integer type
  bool to_bool(std::string_view key) const;
  const std::string& to_string(std::string_view key) const;
  std::vector<std::string> to_strings(std::string_view key) const;
  std::vector<float> to_floats(std::string_view key) const;  // an array of f32 (or f64 / integers)
  std::vector<int32_t> to_ints(std::string_view key) const;  // an array of integers fitting in int32

  // One line for `qtune info`: scalars and strings in full (strings quoted, cut at `max_chars`), arrays as
  // their type, length and first items.
  std::string describe(size_t max_chars = 60) const;

 private:
  GgufType type_ = GgufType::u32;
  GgufType item_type_ = GgufType::u8;
  uint64_t bits_ = 0;
  std::string text_;
  std::vector<GgufValue> items_;
};

// Metadata in file order (the order a writer writes and `qtune info` prints).
using GgufMetadata = std::vector<std::pair<std::string, GgufValue>>;

// The value under `key`, or nullptr.
const GgufValue* find_gguf_value(const GgufMetadata& metadata, std::string_view key);

}  // namespace qtune::io
