#pragma once
// The schemes a whole model's weights can be stored in (`qtune quantize`, the quantizing loader, quantized
// checkpoints), by name and group size; quant/weight_quantize.h turns a weight into the module of its scheme.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "quant/float8_recipe.h"
#include "quant/qat_config.h"

namespace qtune::quant {

// NF4 with double-quantized scalers (docs/numerics.md §1): the QLoRA storage, as a frozen linear.
struct NF4 {};
// e4m3 weights with the recipe's scales (docs/numerics.md §3), stored once: LoRA's float8 frozen base. A base
// for training, not a checkpoint format (quantized checkpoints refuse it; parse_weight_scheme has no name
// for it).
struct Float8Weights {
  Float8LinearConfig config;
};

using WeightScheme = std::variant<Int8DynActInt4Weight, Int4WeightOnly, Q4_0, Q8_0, NF4, Float8Weights>;

// How a whole model is quantized (`qtune quantize`, `qtune eval --quantize`, the quantizing loader): every
// decoder projection (q/k/v/o, gate/up/down) with `scheme`; the token embedding only when `embedding` is set
// (int4 per group, QuantizedEmbedding); the output head with `scheme` only when `head` is set.
struct ModelQuantization {
  WeightScheme scheme;
  std::optional<EmbeddingInt4> embedding = std::nullopt;
  bool head = false;
};

// The weights a QAT scheme stores: the scheme itself, and q4_0 / q8_0 for ggml_q4_0 / ggml_q8_0 (whose quantized
// inputs exist only in training and in llama.cpp's kernels).
WeightScheme stored_weight_scheme(const LinearScheme& scheme);

// "8da4w" | "int4wo" | "nf4" | "q4_0" | "q8_0"; group_size overrides the 8da4w / int4wo default (32 / 128)
// and is an error for the fixed-block schemes. Anything else throws listing the valid names.
WeightScheme parse_weight_scheme(std::string_view name, std::optional<int64_t> group_size = std::nullopt);
std::string weight_scheme_name(const WeightScheme& scheme);
// Weights per scale: the group of 8da4w / int4wo, the block of q4_0 / q8_0 (32) and of NF4 (64). fp8 has
// per-row or per-tensor scales, no groups (an Error).
int64_t weight_scheme_group_size(const WeightScheme& scheme);
// Whether the group size is a choice (8da4w, int4wo) rather than fixed by the format.
bool takes_group_size(const WeightScheme& scheme);

// Throws naming `fqn` and the rule when a linear of these dims cannot take the scheme: a group size that
// does not divide in_features; for fp8, dims that are not multiples of 16. NF4 takes any shape.
void check_weight_scheme_fits(const WeightScheme& scheme, int64_t out_features, int64_t in_features,
                              std::string_view fqn);

}  // namespace qtune::quant
