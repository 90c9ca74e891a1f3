#include "engine/io/safetensors_header.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <set>
#include <utility>

#include <nlohmann/json.hpp>

#include "engine/check.h"
#include "engine/io/utf8.h"

namespace qtune::io {
namespace {

struct DTypeInfo {
  StDType type;
  std::string_view name;
  size_t size;
};

constexpr std::array<DTypeInfo, 12> kDTypes{{
    {StDType::F64, "F64", 8},
    {StDType::F32, "F32", 4},
    {StDType::F16, "F16", 2},
    {StDType::BF16, "BF16", 2},
    {StDType::F8_E4M3, "F8_E4M3", 1},
    {StDType::F8_E5M2, "F8_E5M2", 1},
    {StDType::I64, "I64", 8},
    {StDType::I32, "I32", 4},
    {StDType::I16, "I16", 2},
    {StDType::I8, "I8", 1},
    {StDType::U8, "U8", 1},
    {StDType::BOOL, "BOOL", 1},
}};

const DTypeInfo& info(StDType t) { return kDTypes[static_cast<size_t>(t)]; }

// nlohmann keeps the last of two equal keys silently; the format forbids them, so the parser's
// callback records every object's keys and reports the first repeat.
nlohmann::json parse_rejecting_duplicates(std::string_view text, const std::string& label) {
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  auto callback = [&](int, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using Event = nlohmann::json::parse_event_t;
    if (event == Event::object_start) {
      open_objects.emplace_back();
    } else if (event == Event::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (event == Event::key && !open_objects.empty() && duplicate.empty()) {
      const std::string key = parsed.get<std::string>();
      if (!open_objects.back().insert(key).second) duplicate = key;
    }
    return true;
  };
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(text.begin(), text.end(), callback);
  } catch (const nlohmann::json::exception& e) {
    QTUNE_FAIL(label, ": header is not valid JSON (", e.what(), ")");
  }
  QTUNE_CHECK(duplicate.empty(), label, ": header repeats the key \"", duplicate, "\"");
  return doc;
}

uint64_t unsigned_field(const nlohmann::json& value, const std::string& label, const std::string& what) {
  QTUNE_CHECK(value.is_number_unsigned(), label, ": ", what, " must be a non-negative integer, got ", value.dump());
  return value.get<uint64_t>();
}

// The tensor's byte size from its shape, or nullopt when it overflows 64 bits.
std::optional<uint64_t> checked_nbytes(const std::vector<uint64_t>& dims, size_t element_size) {
  uint64_t n = element_size;
  for (uint64_t d : dims) {
    if (d != 0 && n > UINT64_MAX / d) return std::nullopt;
    n *= d;
  }
  return n;
}

TensorEntry parse_entry(const std::string& name, const nlohmann::json& value, const std::string& label) {
  const std::string where = label + ": tensor \"" + name + "\"";
  QTUNE_CHECK(value.is_object(), where, " must be an object, got ", value.dump());
  for (const auto& [key, _] : value.items()) {
    QTUNE_CHECK(key == "dtype" || key == "shape" || key == "data_offsets", where, " has an unknown field \"", key,
                "\" (expected dtype, shape, data_offsets)");
  }
  QTUNE_CHECK(value.contains("dtype") && value.contains("shape") && value.contains("data_offsets"), where,
              " must have dtype, shape and data_offsets");

  const auto& dtype = value["dtype"];
  QTUNE_CHECK(dtype.is_string(), where, ": dtype must be a string, got ", dtype.dump());
  const auto st = st_dtype_from_name(dtype.get<std::string>());
  QTUNE_CHECK(st.has_value(), where, ": unknown dtype \"", dtype.get<std::string>(),
              "\" (known: F64 F32 F16 BF16 F8_E4M3 F8_E5M2 I64 I32 I16 I8 U8 BOOL)");

  const auto& shape = value["shape"];
  QTUNE_CHECK(shape.is_array(), where, ": shape must be an array, got ", shape.dump());
  std::vector<uint64_t> dims;
  for (const auto& d : shape) dims.push_back(unsigned_field(d, label, "tensor \"" + name + "\" shape dimension"));
  for (uint64_t d : dims) {
    QTUNE_CHECK(d <= static_cast<uint64_t>(INT64_MAX), where, ": shape dimension ", d, " is too large");
  }

  const auto& offsets = value["data_offsets"];
  QTUNE_CHECK(offsets.is_array() && offsets.size() == 2, where, ": data_offsets must be [begin, end], got ",
              offsets.dump());
  const uint64_t begin = unsigned_field(offsets[0], label, "tensor \"" + name + "\" data_offsets begin");
  const uint64_t end = unsigned_field(offsets[1], label, "tensor \"" + name + "\" data_offsets end");
  QTUNE_CHECK(begin <= end, where, ": data_offsets begin ", begin, " is after end ", end);

  const auto nbytes = checked_nbytes(dims, info(*st).size);
  QTUNE_CHECK(nbytes.has_value(), where, ": byte size of shape ", shape.dump(), " overflows 64 bits");
  QTUNE_CHECK(*nbytes == end - begin, where, ": shape ", shape.dump(), " of ", info(*st).name, " needs ", *nbytes,
              " bytes but data_offsets [", begin, ", ", end, "] span ", end - begin);

  TensorEntry entry{name, *st, {}, begin, end};
  for (uint64_t d : dims) entry.shape.push_back(static_cast<int64_t>(d));
  return entry;
}

}  // namespace

std::string_view st_dtype_name(StDType t) { return info(t).name; }

std::optional<StDType> st_dtype_from_name(std::string_view name) {
  for (const auto& d : kDTypes) {
    if (d.name == name) return d.type;
  }
  return std::nullopt;
}

size_t st_dtype_size(StDType t) { return info(t).size; }

SafetensorsHeader parse_safetensors_header(std::span<const std::byte> image, const std::string& label) {
  QTUNE_CHECK(image.size() >= 8, label, ": file is ", image.size(),
              " bytes, too short to hold the 8-byte header length (not a safetensors file?)");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<uint8_t>(image[static_cast<size_t>(i)]);
  QTUNE_CHECK(header_len <= kMaxSafetensorsHeaderBytes, label, ": header length ", header_len, " exceeds the limit of ",
              kMaxSafetensorsHeaderBytes, " bytes (not a safetensors file?)");
  QTUNE_CHECK(header_len <= image.size() - 8, label, ": header length ", header_len, " runs past the end of the file (",
              image.size(), " bytes)");

  const std::string_view text(reinterpret_cast<const char*>(image.data()) + 8, header_len);
  const size_t bad = first_invalid_utf8(text);
  QTUNE_CHECK(bad == std::string_view::npos, label, ": header is not valid UTF-8 (byte ", bad, " of the header)");
  const nlohmann::json doc = parse_rejecting_duplicates(text, label);
  QTUNE_CHECK(doc.is_object(), label, ": header must be a JSON object, got ", doc.type_name());

  SafetensorsHeader header;
  header.data_offset = 8 + header_len;
  header.data_size = image.size() - header.data_offset;
  for (const auto& [key, value] : doc.items()) {
    if (key == "__metadata__") {
      QTUNE_CHECK(value.is_object(), label, ": __metadata__ must be an object of strings, got ", value.dump());
      for (const auto& [mkey, mvalue] : value.items()) {
        QTUNE_CHECK(mvalue.is_string(), label, ": __metadata__ value of \"", mkey, "\" must be a string, got ",
                    mvalue.dump());
        header.metadata[mkey] = mvalue.get<std::string>();
      }
      continue;
    }
    header.entries.push_back(parse_entry(key, value, label));
  }

  // Sorted by (begin, end), the ranges must tile [0, data_size): each starts where the previous ended.
  std::sort(header.entries.begin(), header.entries.end(), [](const TensorEntry& a, const TensorEntry& b) {
    return std::pair(a.begin, a.end) < std::pair(b.begin, b.end);
  });
  uint64_t expected = 0;
  std::string previous = "the start of the data";
  for (const auto& e : header.entries) {
    QTUNE_CHECK(e.begin == expected, label, ": tensor \"", e.name, "\" starts at byte ", e.begin, " of the data but ",
                previous, " ends at ", expected, e.begin > expected ? " (a gap)" : " (an overlap)");
    expected = e.end;
    previous = "tensor \"" + e.name + "\"";
  }
  QTUNE_CHECK(expected == header.data_size, label, ": the tensors' data ends at byte ", expected,
              " but the data section holds ", header.data_size, " bytes");
  return header;
}

}  // namespace qtune::io
