#include "engine/io/json_reader.h"

#include <filesystem>
#include <fstream>
#include <iterator>

#include "engine/check.h"

namespace qtune::io {
namespace {

// A value as messages show it: whole when short, cut after 200 characters.
std::string shown(const Json& v) {
  // Parsed text is valid UTF-8, but strings built from other input (command-line overrides) may not be.
  std::string text = v.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (text.size() > 200) text = text.substr(0, 200) + "...";
  return text;
}

}  // namespace

Json parse_json(std::string_view text, const std::string& source) {
  try {
    return Json::parse(text);
  } catch (const Json::exception& e) {
    QTUNE_FAIL(source, ": not valid JSON (", e.what(), "; JSON has no comments or trailing commas)");
  }
}

Json read_json_file(const std::string& path) {
  QTUNE_CHECK(std::filesystem::is_regular_file(path), path, " not found");
  std::ifstream in(path, std::ios::binary);
  QTUNE_CHECK(in.good(), path, ": cannot open for reading");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return parse_json(text, path);
}

int64_t json_integer(const Json& v, std::string_view name, std::string_view source) {
  if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<uint64_t>() > INT64_MAX))
    json_wrong_type(v, name, source, "an integer");
  return v.get<int64_t>();
}

double json_number(const Json& v, std::string_view name, std::string_view source) {
  if (!v.is_number()) json_wrong_type(v, name, source, "a number");
  return v.get<double>();
}

bool json_boolean(const Json& v, std::string_view name, std::string_view source) {
  if (!v.is_boolean()) json_wrong_type(v, name, source, "true or false (a boolean)");
  return v.get<bool>();
}

std::string json_string(const Json& v, std::string_view name, std::string_view source) {
  if (!v.is_string()) json_wrong_type(v, name, source, "a string");
  return v.get<std::string>();
}

void json_wrong_type(const Json& v, std::string_view name, std::string_view source, std::string_view expected) {
  QTUNE_FAIL(name, " in ", source, " must be ", expected, ", got ", v.type_name(), " ", shown(v));
}

JsonFields::JsonFields(const Json& object, std::string source, std::string prefix)
    : object_(object), source_(std::move(source)), prefix_(std::move(prefix)) {
  if (object_.is_object()) return;
  if (prefix_.empty())
    QTUNE_FAIL("the top level of ", source_, " must be a JSON object, got ", object_.type_name(), " ", shown(object_));
  QTUNE_FAIL(prefix_.substr(0, prefix_.size() - 1), " in ", source_, " must be a JSON object, got ",
             object_.type_name(), " ", shown(object_));
}

std::string JsonFields::name(std::string_view key) const { return prefix_ + std::string(key); }

bool JsonFields::present(std::string_view key) const { return object_.contains(std::string(key)); }

bool JsonFields::has(std::string_view key) const { return present(key) && !object_.at(std::string(key)).is_null(); }

const Json& JsonFields::at(std::string_view key) const {
  if (!present(key)) fail(key, "is missing");
  return object_.at(std::string(key));
}

const Json& JsonFields::required(std::string_view key) const {
  if (!has(key)) fail(key, "is missing");
  return object_.at(std::string(key));
}

int64_t JsonFields::as_integer(const Json& v, std::string_view key) const {
  return json_integer(v, name(key), source_);
}
double JsonFields::as_number(const Json& v, std::string_view key) const { return json_number(v, name(key), source_); }
bool JsonFields::as_boolean(const Json& v, std::string_view key) const { return json_boolean(v, name(key), source_); }
std::string JsonFields::as_string(const Json& v, std::string_view key) const {
  return json_string(v, name(key), source_);
}

int64_t JsonFields::integer(std::string_view key) const { return as_integer(required(key), key); }
int64_t JsonFields::integer(std::string_view key, int64_t fallback) const { return has(key) ? integer(key) : fallback; }
double JsonFields::number(std::string_view key) const { return as_number(required(key), key); }
double JsonFields::number(std::string_view key, double fallback) const { return has(key) ? number(key) : fallback; }
bool JsonFields::boolean(std::string_view key) const { return as_boolean(required(key), key); }
bool JsonFields::boolean(std::string_view key, bool fallback) const { return has(key) ? boolean(key) : fallback; }
std::string JsonFields::string(std::string_view key) const { return as_string(required(key), key); }
std::string JsonFields::string(std::string_view key, const std::string& fallback) const {
  return has(key) ? string(key) : fallback;
}

JsonFields JsonFields::object(std::string_view key) const {
  const Json& v = required(key);
  if (!v.is_object()) wrong_type(key, "an object", v);
  return JsonFields(v, source_, name(key) + ".");
}

const Json& JsonFields::array(std::string_view key) const {
  const Json& v = required(key);
  if (!v.is_array()) wrong_type(key, "a list", v);
  return v;
}

std::string JsonFields::item_name(std::string_view key, size_t i) const {
  return std::string(key) + "[" + std::to_string(i) + "]";
}

void JsonFields::expect(bool ok, std::string_view key, std::string_view what) const {
  if (!ok) fail(key, what);
}

void JsonFields::fail(std::string_view key, std::string_view what) const {
  QTUNE_FAIL(name(key), " in ", source_, " ", what);
}

void JsonFields::wrong_type(std::string_view key, std::string_view expected, const Json& v) const {
  json_wrong_type(v, name(key), source_, expected);
}

}  // namespace qtune::io
