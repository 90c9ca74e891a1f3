#include "engine/io/gguf_value.h"

#include <bit>
#include <cstdio>
#include <cstring>
#include <limits>

#include "engine/check.h"

namespace qtune::io {

std::string_view gguf_type_name(GgufType t) {
  switch (t) {
    case GgufType::u8:
      return "u8";
    case GgufType::i8:
      return "i8";
    case GgufType::u16:
      return "u16";
    case GgufType::i16:
      return "i16";
    case GgufType::u32:
      return "u32";
    case GgufType::i32:
      return "i32";
    case GgufType::f32:
      return "f32";
    case GgufType::boolean:
      return "bool";
    case GgufType::string:
      return "string";
    case GgufType::array:
      return "array";
    case GgufType::u64:
      return "u64";
    case GgufType::i64:
      return "i64";
    case GgufType::f64:
      return "f64";
  }
  return "unknown";
}

size_t gguf_scalar_bytes(GgufType t) {
  switch (t) {
    case GgufType::u8:
    case GgufType::i8:
    case GgufType::boolean:
      return 1;
    case GgufType::u16:
    case GgufType::i16:
      return 2;
    case GgufType::u32:
    case GgufType::i32:
    case GgufType::f32:
      return 4;
    case GgufType::u64:
    case GgufType::i64:
    case GgufType::f64:
      return 8;
    case GgufType::string:
    case GgufType::array:
      return 0;
  }
  return 0;
}

GgufValue GgufValue::scalar(GgufType type, uint64_t bits) {
  QTUNE_CHECK(gguf_scalar_bytes(type) > 0, "GGUF value: ", gguf_type_name(type), " is not a scalar type");
  GgufValue v;
  v.type_ = type;
  v.bits_ = bits;
  return v;
}

GgufValue GgufValue::f32(float v) { return scalar(GgufType::f32, std::bit_cast<uint32_t>(v)); }
GgufValue GgufValue::f64(double v) { return scalar(GgufType::f64, std::bit_cast<uint64_t>(v)); }

GgufValue GgufValue::string(std::string v) {
  GgufValue out;
  out.type_ = GgufType::string;
  out.text_ = std::move(v);
  return out;
}

GgufValue GgufValue::array(GgufType item_type, std::vector<GgufValue> items) {
  QTUNE_CHECK(item_type != GgufType::array, "GGUF value: arrays of arrays are not supported");
  for (const GgufValue& item : items)
    QTUNE_CHECK(item.type_ == item_type, "GGUF value: an array of ", gguf_type_name(item_type), " holds a ",
                gguf_type_name(item.type_));
  GgufValue out;
  out.type_ = GgufType::array;
  out.item_type_ = item_type;
  out.items_ = std::move(items);
  return out;
}

GgufValue GgufValue::strings(std::vector<std::string> items) {
  std::vector<GgufValue> values;
  values.reserve(items.size());
  for (std::string& s : items) values.push_back(string(std::move(s)));
  return array(GgufType::string, std::move(values));
}

GgufValue GgufValue::f32s(const std::vector<float>& items) {
  std::vector<GgufValue> values;
  values.reserve(items.size());
  for (const float v : items) values.push_back(f32(v));
  return array(GgufType::f32, std::move(values));
}

GgufValue GgufValue::i32s(const std::vector<int32_t>& items) {
  std::vector<GgufValue> values;
  values.reserve(items.size());
  for (const int32_t v : items) values.push_back(i32(v));
  return array(GgufType::i32, std::move(values));
}

namespace {

// An integer scalar's value, sign-extended for the signed types, in `out`; false for other types.
bool integer_value(const GgufValue& v, __int128& out) {
  const uint64_t b = v.bits();
  switch (v.type()) {
    case GgufType::u8:
    case GgufType::u16:
    case GgufType::u32:
    case GgufType::u64:
      out = static_cast<__int128>(b);
      return true;
    case GgufType::i8:
      out = static_cast<int8_t>(b);
      return true;
    case GgufType::i16:
      out = static_cast<int16_t>(b);
      return true;
    case GgufType::i32:
      out = static_cast<int32_t>(b);
      return true;
    case GgufType::i64:
      out = static_cast<int64_t>(b);
      return true;
    default:
      return false;
  }
}

}  // namespace

int64_t GgufValue::to_int(std::string_view key) const {
  __int128 v = 0;
  QTUNE_CHECK(integer_value(*this, v), "GGUF key ", key, " is a ", gguf_type_name(type_), ", not an integer");
  QTUNE_CHECK(v <= std::numeric_limits<int64_t>::max(), "GGUF key ", key, " is ", static_cast<uint64_t>(v),
              ", out of range");
  return static_cast<int64_t>(v);
}

double GgufValue::to_double(std::string_view key) const {
  if (type_ == GgufType::f32) return std::bit_cast<float>(static_cast<uint32_t>(bits_));
  if (type_ == GgufType::f64) return std::bit_cast<double>(bits_);
  __int128 v = 0;
  QTUNE_CHECK(integer_value(*this, v), "GGUF key ", key, " is a ", gguf_type_name(type_), ", not a number");
  return static_cast<double>(v);
}

bool GgufValue::to_bool(std::string_view key) const {
  QTUNE_CHECK(type_ == GgufType::boolean, "GGUF key ", key, " is a ", gguf_type_name(type_), ", not a bool");
  return bits_ != 0;
}

const std::string& GgufValue::to_string(std::string_view key) const {
  QTUNE_CHECK(type_ == GgufType::string, "GGUF key ", key, " is a ", gguf_type_name(type_), ", not a string");
  return text_;
}

std::vector<std::string> GgufValue::to_strings(std::string_view key) const {
  QTUNE_CHECK(type_ == GgufType::array && item_type_ == GgufType::string, "GGUF key ", key,
              " is not an array of strings");
  std::vector<std::string> out;
  out.reserve(items_.size());
  for (const GgufValue& item : items_) out.push_back(item.text_);
  return out;
}

std::vector<float> GgufValue::to_floats(std::string_view key) const {
  QTUNE_CHECK(type_ == GgufType::array && item_type_ != GgufType::string && item_type_ != GgufType::boolean,
              "GGUF key ", key, " is not an array of numbers");
  std::vector<float> out;
  out.reserve(items_.size());
  for (const GgufValue& item : items_) out.push_back(static_cast<float>(item.to_double(key)));
  return out;
}

std::vector<int32_t> GgufValue::to_ints(std::string_view key) const {
  QTUNE_CHECK(type_ == GgufType::array, "GGUF key ", key, " is not an array of integers");
  std::vector<int32_t> out;
  out.reserve(items_.size());
  for (const GgufValue& item : items_) {
    const int64_t v = item.to_int(key);
    QTUNE_CHECK(v >= std::numeric_limits<int32_t>::min() && v <= std::numeric_limits<int32_t>::max(), "GGUF key ", key,
                " holds ", v, ", outside int32");
    out.push_back(static_cast<int32_t>(v));
  }
  return out;
}

std::string GgufValue::describe(size_t max_chars) const {
  switch (type_) {
    case GgufType::string: {
      const bool cut = text_.size() > max_chars;
      std::string out(1, '"');
      out.append(text_, 0, cut ? max_chars : text_.size());
      for (char& c : out)
        if (c == '\n' || c == '\r' || c == '\t') c = ' ';
      out.append(cut ? "...\"" : "\"");
      if (cut) out.append(" (").append(std::to_string(text_.size())).append(" bytes)");
      return out;
    }
    case GgufType::array: {
      std::string out("[");
      out.append(gguf_type_name(item_type_)).append(" x ").append(std::to_string(items_.size())).append("]");
      size_t shown = 0, chars = 0;
      for (; shown < items_.size() && chars < max_chars; ++shown) {
        const std::string item = items_[shown].describe(16);
        out.append(shown ? ", " : " ").append(item);
        chars += item.size() + 2;
      }
      if (shown < items_.size()) out.append(", ...");
      return out;
    }
    case GgufType::boolean:
      return bits_ ? "true" : "false";
    case GgufType::f32:
    case GgufType::f64: {
      char buffer[32];
      std::snprintf(buffer, sizeof buffer, "%.9g", to_double(""));
      return buffer;
    }
    default: {
      __int128 v = 0;
      integer_value(*this, v);
      return v < 0 ? std::to_string(static_cast<int64_t>(v)) : std::to_string(static_cast<uint64_t>(v));
    }
  }
}

const GgufValue* find_gguf_value(const GgufMetadata& metadata, std::string_view key) {
  for (const auto& [k, v] : metadata)
    if (k == key) return &v;
  return nullptr;
}

}  // namespace qtune::io
