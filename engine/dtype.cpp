#include "engine/dtype.h"

#include <array>

#include "engine/check.h"

namespace qtune {
namespace {
struct DTypeInfo {
  DType type;
  std::string_view name;
  size_t size;
};
constexpr std::array<DTypeInfo, 11> kInfo{{{DType::f64, "f64", 8},
                                           {DType::f32, "f32", 4},
                                           {DType::bf16, "bf16", 2},
                                           {DType::f16, "f16", 2},
                                           {DType::f8_e4m3, "f8_e4m3", 1},
                                           {DType::f8_e5m2, "f8_e5m2", 1},
                                           {DType::i64, "i64", 8},
                                           {DType::i32, "i32", 4},
                                           {DType::i8, "i8", 1},
                                           {DType::u8, "u8", 1},
                                           {DType::boolean, "bool", 1}}};
}  // namespace

size_t dtype_size(DType t) { return kInfo[static_cast<size_t>(t)].size; }
std::string_view dtype_name(DType t) { return kInfo[static_cast<size_t>(t)].name; }

DType dtype_from_name(std::string_view name) {
  for (const auto& info : kInfo)
    if (info.name == name) return info.type;
  QTUNE_FAIL("unknown dtype '", name, "'; expected one of f64 f32 bf16 f16 f8_e4m3 f8_e5m2 i64 i32 i8 u8 bool");
}

bool is_floating(DType t) { return static_cast<int>(t) <= static_cast<int>(DType::f8_e5m2); }
bool is_integral(DType t) { return !is_floating(t); }

}  // namespace qtune
