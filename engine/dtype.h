#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace qtune {

// Element types of a Tensor. Quantized formats with scales (NF4, packed int4) are classes in quant/,
// not dtypes.
enum class DType : uint8_t { f64, f32, bf16, f16, f8_e4m3, f8_e5m2, i64, i32, i8, u8, boolean };

size_t dtype_size(DType t);
std::string_view dtype_name(DType t);
// Parses the names dtype_name() prints ("f32", "bf16", ...); throws naming the bad string.
DType dtype_from_name(std::string_view name);
bool is_floating(DType t);  // f64 f32 bf16 f16 f8_e4m3 f8_e5m2
bool is_integral(DType t);  // i64 i32 i8 u8 bool

// Storage types of the 16- and 8-bit floats; arithmetic always goes through f32.
struct bf16_t {
  uint16_t bits;
};
struct f16_t {
  uint16_t bits;
};
struct f8_e4m3_t {
  uint8_t bits;
};
struct f8_e5m2_t {
  uint8_t bits;
};

template <class T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<double>() {
  return DType::f64;
}
template <>
constexpr DType dtype_of<float>() {
  return DType::f32;
}
template <>
constexpr DType dtype_of<bf16_t>() {
  return DType::bf16;
}
template <>
constexpr DType dtype_of<f16_t>() {
  return DType::f16;
}
template <>
constexpr DType dtype_of<f8_e4m3_t>() {
  return DType::f8_e4m3;
}
template <>
constexpr DType dtype_of<f8_e5m2_t>() {
  return DType::f8_e5m2;
}
template <>
constexpr DType dtype_of<int64_t>() {
  return DType::i64;
}
template <>
constexpr DType dtype_of<int32_t>() {
  return DType::i32;
}
template <>
constexpr DType dtype_of<int8_t>() {
  return DType::i8;
}
template <>
constexpr DType dtype_of<uint8_t>() {
  return DType::u8;
}
template <>
constexpr DType dtype_of<bool>() {
  return DType::boolean;
}

}  // namespace qtune
