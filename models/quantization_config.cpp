#include "models/quantization_config.h"

#include <filesystem>

#include "engine/check.h"
#include "engine/io/gguf_header.h"
#include "engine/io/json_reader.h"

namespace qtune::models {

std::optional<quant::ModelQuantization> read_quantization_config(const std::string& dir) {
  namespace fs = std::filesystem;
  if (io::is_gguf_file(dir)) return std::nullopt;  // its quantized tensors are dequantized on loading
  const std::string path = fs::is_regular_file(dir) ? dir : (fs::path(dir) / "config.json").string();
  // A missing or malformed config.json is not a quantized one; load_llama_config names what is wrong.
  io::Json j;
  try {
    j = io::read_json_file(path);
  } catch (const Error&) {
    return std::nullopt;
  }
  if (!j.is_object() || !j.contains("quantization_config") || j["quantization_config"].is_null()) return std::nullopt;
  const io::JsonFields q = io::JsonFields(j, path).object("quantization_config");
  q.expect(q.string("quant_method", "") == "qtune", "quant_method",
           "must be \"qtune\": qtune reads only its own quantized format");
  const int64_t version = q.integer("format_version");
  q.expect(
      version == kQuantizedFormatVersion, "format_version",
      "is " + std::to_string(version) + "; this qtune reads format version " + std::to_string(kQuantizedFormatVersion));
  const std::string name = q.string("scheme");
  const int64_t group = q.integer("group_size");
  quant::ModelQuantization out{quant::WeightScheme{}};
  try {
    out.scheme = quant::parse_weight_scheme(name);
    if (quant::takes_group_size(out.scheme)) out.scheme = quant::parse_weight_scheme(name, group);
  } catch (const Error& e) {
    QTUNE_FAIL(q.name("scheme"), " in ", path, ": ", e.what());
  }
  const int64_t block = quant::weight_scheme_group_size(out.scheme);
  q.expect(block == group, "group_size",
           "is " + std::to_string(group) + " but scheme " + name + " has fixed blocks of " + std::to_string(block));
  if (q.has("embedding")) {
    const io::JsonFields e = q.object("embedding");
    e.expect(e.string("scheme") == "int4", "scheme", "must be \"int4\" (the only embedding scheme)");
    const int64_t embedding_group = e.integer("group_size");
    e.expect(embedding_group > 0, "group_size", "must be positive");
    out.embedding = quant::EmbeddingInt4{embedding_group};
  }
  out.head = q.boolean("head", false);
  return out;
}

}  // namespace qtune::models
