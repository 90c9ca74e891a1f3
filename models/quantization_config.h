#pragma once
// The `quantization_config` of a quantized checkpoint's config.json (docs/quantized-format.md):
// {"quant_method": "qtune", "format_version": 1, "scheme", "group_size", "embedding", "head"}.
#include <optional>
#include <string>

#include "quant/weight_scheme.h"

namespace qtune::models {

inline constexpr int kQuantizedFormatVersion = 1;

// The quantization_config of the config.json in `dir` (a directory or the file itself); nullopt when it
// has none (a plain checkpoint, or no readable config.json: load_llama_config says what is wrong). A wrong method, an
// unknown format version, scheme or group size fails naming the file and the field.
std::optional<quant::ModelQuantization> read_quantization_config(const std::string& dir);

}  // namespace qtune::models
