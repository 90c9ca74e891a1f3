#include "engine/io/ggml_type.h"

#include <array>
#include <cctype>

namespace qtune::io {
namespace {

struct TypeRow {
  uint32_t id;
  std::string_view name;
  GgmlTypeLayout layout;  // block_bytes 0: a type qtune has no layout for
};

// Block sizes and bytes per block as ggml's block structs define them (QK_K = 256 for the K-quants).
constexpr std::array kTypes = {
    TypeRow{0, "F32", {1, 4}},       TypeRow{1, "F16", {1, 2}},       TypeRow{2, "Q4_0", {32, 18}},
    TypeRow{3, "Q4_1", {32, 20}},    TypeRow{4, "Q4_2", {}},          TypeRow{5, "Q4_3", {}},
    TypeRow{6, "Q5_0", {32, 22}},    TypeRow{7, "Q5_1", {32, 24}},    TypeRow{8, "Q8_0", {32, 34}},
    TypeRow{9, "Q8_1", {32, 36}},    TypeRow{10, "Q2_K", {256, 84}},  TypeRow{11, "Q3_K", {256, 110}},
    TypeRow{12, "Q4_K", {256, 144}}, TypeRow{13, "Q5_K", {256, 176}}, TypeRow{14, "Q6_K", {256, 210}},
    TypeRow{15, "Q8_K", {256, 292}}, TypeRow{16, "IQ2_XXS", {}},      TypeRow{17, "IQ2_XS", {}},
    TypeRow{18, "IQ3_XXS", {}},      TypeRow{19, "IQ1_S", {}},        TypeRow{20, "IQ4_NL", {}},
    TypeRow{21, "IQ3_S", {}},        TypeRow{22, "IQ2_S", {}},        TypeRow{23, "IQ4_XS", {}},
    TypeRow{24, "I8", {1, 1}},       TypeRow{25, "I16", {1, 2}},      TypeRow{26, "I32", {1, 4}},
    TypeRow{27, "I64", {1, 8}},      TypeRow{28, "F64", {1, 8}},      TypeRow{29, "IQ1_M", {}},
    TypeRow{30, "BF16", {1, 2}},     TypeRow{31, "Q4_0_4_4", {}},     TypeRow{32, "Q4_0_4_8", {}},
    TypeRow{33, "Q4_0_8_8", {}},     TypeRow{34, "TQ1_0", {}},        TypeRow{35, "TQ2_0", {}},
    TypeRow{36, "IQ4_NL_4_4", {}},   TypeRow{37, "IQ4_NL_4_8", {}},   TypeRow{38, "IQ4_NL_8_8", {}},
    TypeRow{39, "MXFP4", {}},        TypeRow{40, "NVFP4", {}},
};

const TypeRow* row_of(uint32_t id) {
  for (const TypeRow& row : kTypes)
    if (row.id == id) return &row;
  return nullptr;
}

}  // namespace

std::string ggml_type_name(uint32_t id) {
  const TypeRow* row = row_of(id);
  return row ? std::string(row->name) : "type " + std::to_string(id);
}

std::optional<GgmlType> ggml_type_from_id(uint32_t id) {
  const TypeRow* row = row_of(id);
  if (!row || row->layout.block_bytes == 0) return std::nullopt;
  return static_cast<GgmlType>(id);
}

std::optional<GgmlType> ggml_type_from_name(std::string_view name) {
  for (const TypeRow& row : kTypes) {
    if (row.layout.block_bytes == 0 || row.name.size() != name.size()) continue;
    bool same = true;
    for (size_t i = 0; i < name.size() && same; ++i)
      same = std::toupper(static_cast<unsigned char>(name[i])) == static_cast<unsigned char>(row.name[i]);
    if (same) return static_cast<GgmlType>(row.id);
  }
  return std::nullopt;
}

GgmlTypeLayout ggml_type_layout(GgmlType t) { return row_of(static_cast<uint32_t>(t))->layout; }

bool is_quantized_type(GgmlType t) { return ggml_type_layout(t).block > 1; }

uint64_t ggml_row_bytes(GgmlType t, uint64_t elements) {
  const GgmlTypeLayout layout = ggml_type_layout(t);
  return elements / static_cast<uint64_t>(layout.block) * static_cast<uint64_t>(layout.block_bytes);
}

}  // namespace qtune::io
