#pragma once
// Strict, typed reading of JSON files: config.json, tokenizer.json, adapter_config.json, run configs,
// quantization_config. Every parser of a JSON file reads through this, so every complaint has one form:
// "<dotted key> in <file> must be <what>, got <type> <value>", "<dotted key> in <file> is missing".
// Private to the library and its tools (not installed): it exposes nlohmann/json.
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace qtune::io {

using Json = nlohmann::json;

// Parses `text`; an Error names `source` and what the parser said.
Json parse_json(std::string_view text, const std::string& source);
// Reads and parses the file at `path`; an Error names it when it is missing, unreadable or not JSON.
Json read_json_file(const std::string& path);

// One value converted to its type; messages call it `name` in `source` (a dotted key, a file or override).
int64_t json_integer(const Json& v, std::string_view name, std::string_view source);
double json_number(const Json& v, std::string_view name, std::string_view source);
bool json_boolean(const Json& v, std::string_view name, std::string_view source);
std::string json_string(const Json& v, std::string_view name, std::string_view source);
// "<name> in <source> must be <expected>, got <type> <value>".
[[noreturn]] void json_wrong_type(const Json& v, std::string_view name, std::string_view source,
                                  std::string_view expected);

class JsonFields {
 public:
  // `object` must be a JSON object (an Error names `source` and the prefix otherwise). `prefix` is the
  // dotted path of `object` in its file ("rope_scaling.", "pre_tokenizer.pretokenizers[1]."), prepended to
  // every key in messages. `object` must outlive this reader.
  JsonFields(const Json& object, std::string source, std::string prefix = "");

  const std::string& source() const { return source_; }
  const Json& json() const { return object_; }
  // prefix + key: how messages name the field.
  std::string name(std::string_view key) const;

  // Present, even as null.
  bool present(std::string_view key) const;
  // Present and not null: transformers and peft write null for an unset optional field.
  bool has(std::string_view key) const;
  // The value of a present key (null included).
  const Json& at(std::string_view key) const;
  // The value of a key that must be there and not null ("... is missing" otherwise).
  const Json& required(std::string_view key) const;

  // Typed fields. Without a fallback the key is required; with one, an absent or null key takes it.
  int64_t integer(std::string_view key) const;
  int64_t integer(std::string_view key, int64_t fallback) const;
  double number(std::string_view key) const;
  double number(std::string_view key, double fallback) const;
  bool boolean(std::string_view key) const;
  bool boolean(std::string_view key, bool fallback) const;
  std::string string(std::string_view key) const;
  std::string string(std::string_view key, const std::string& fallback) const;
  // A nested object, read with this file's name and the key's path as prefix.
  JsonFields object(std::string_view key) const;
  // A list (its items are checked by the caller, who names them with item_name).
  const Json& array(std::string_view key) const;
  // "key[i]": how messages name the i-th item of a list.
  std::string item_name(std::string_view key, size_t i) const;

  // The same conversions for a value in hand, named `key` in messages (a list item, a value from a loop).
  int64_t as_integer(const Json& v, std::string_view key) const;
  double as_number(const Json& v, std::string_view key) const;
  bool as_boolean(const Json& v, std::string_view key) const;
  std::string as_string(const Json& v, std::string_view key) const;

  // Throws "<name> in <file> <what>" unless ok.
  void expect(bool ok, std::string_view key, std::string_view what) const;
  [[noreturn]] void fail(std::string_view key, std::string_view what) const;
  // "<name> in <file> must be <expected>, got <type> <value>".
  [[noreturn]] void wrong_type(std::string_view key, std::string_view expected, const Json& v) const;

 private:
  const Json& object_;
  std::string source_, prefix_;
};

}  // namespace qtune::io
