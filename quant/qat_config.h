#pragma once
// The named QAT schemes (docs/numerics.md §2) and the config of a quantize_ pass (quant/qat.h).
//
// The math is docs/numerics.md §2, written once in engine/numerics/intx_quant.h and ggml_blocks.h. Where the
// references disagree with each other:
//  - STE mask: qtune passes the gradient where qmin <= code <= qmax, bounds included. torch 2.15's clamp
//    backward excludes the bounds, so torchao 0.18 gives 0 gradient to an element whose code lands exactly
//    on qmin or qmax (tests/test_fake_quant.cpp pins both behaviours).
//  - q8_0: codes are roundf(x * (1/d)), the reciprocal multiply ggml computes, not a division by d.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "engine/dtype.h"
#include "engine/numerics/intx_quant.h"

namespace qtune::quant {

// int8 dynamic per-token asymmetric activations + int4 per-group symmetric weights ("8da4w").
struct Int8DynActInt4Weight {
  int64_t group_size = 32;  // 32, 64, 128 or 256; must divide in_features
  bool operator==(const Int8DynActInt4Weight&) const = default;
};
// int4 asymmetric per-group weights, activations untouched ("int4wo").
struct Int4WeightOnly {
  int64_t group_size = 128;  // 32, 64, 128 or 256; must divide in_features
  bool operator==(const Int4WeightOnly&) const = default;
};
// llama.cpp's block formats (blocks of 32 along in_features), weights only.
struct Q4_0 {
  bool operator==(const Q4_0&) const = default;
};
struct Q8_0 {
  bool operator==(const Q8_0&) const = default;
};
// llama.cpp's CPU numerics for Q4_0 / Q8_0 weights ("ggml_q4_0", "ggml_q8_0", docs/numerics.md §9): the weights
// in their format, and linear inputs fake-quantized to Q8_0 blocks of 32 along in_features, as ggml's dot product
// quantizes each activation row before multiplying. Convert and export as q4_0 / q8_0.
struct GgmlQ4_0 {
  bool operator==(const GgmlQ4_0&) const = default;
};
struct GgmlQ8_0 {
  bool operator==(const GgmlQ8_0&) const = default;
};
// int4 symmetric per-group embedding tables (the 8da4w weight formulas), along embedding_dim.
struct EmbeddingInt4 {
  int64_t group_size = 32;
  bool operator==(const EmbeddingInt4&) const = default;
};

using LinearScheme = std::variant<Int8DynActInt4Weight, Int4WeightOnly, Q4_0, Q8_0, GgmlQ4_0, GgmlQ8_0>;

enum class QATStep { Prepare, Convert };

struct QATConfig {
  LinearScheme scheme;
  QATStep step = QATStep::Prepare;
  // Embeddings are fake-quantized only when this is set.
  std::optional<EmbeddingInt4> embedding = std::nullopt;
  // Prepared modules keep fake quantization off until the trainer's step reaches this (see
  // FakeQuantizedLinear::set_step).
  int64_t fake_quant_after_n_steps = 0;
};

// "8da4w", "int4wo", "q4_0", "q8_0", "ggml_q4_0" or "ggml_q8_0" with `group_size` weights per scale: 0 takes the
// scheme's default (the member initializers above: 8da4w 32, int4wo 128); 32, 64, 128 and 256 are allowed for 8da4w and
// int4wo, and only 0 for the fixed blocks of the ggml formats. The one place that turns a scheme's name and
// group size into a scheme: the CLI, run configs and quantized checkpoints all come through here.
// Anything else throws, naming the valid names or sizes.
LinearScheme parse_linear_scheme(std::string_view name, int64_t group_size = 0);
std::string scheme_name(const LinearScheme& scheme);
// Weights per scale: the group size of 8da4w / int4wo, the block of 32 of the ggml formats.
int64_t group_size_of(const LinearScheme& scheme);
// Whether the group size is a choice (8da4w, int4wo) rather than fixed by the format (q4_0, q8_0, ggml_*).
bool takes_group_size(const LinearScheme& scheme);

// Throws naming `fqn` when the scheme's group size is not allowed or does not divide in_features.
void check_scheme_fits(const LinearScheme& scheme, int64_t in_features, std::string_view fqn);
void check_scheme_fits(const EmbeddingInt4& scheme, int64_t embedding_dim, std::string_view fqn);

// What the fake quantizers of a scheme compute, for weights of `dtype` along in_features.
numerics::FakeQuantSpec weight_spec(const LinearScheme& scheme);
numerics::FakeQuantSpec weight_spec(const EmbeddingInt4& scheme);
// Linear inputs: per token (8da4w), Q8_0 blocks (ggml_q4_0, ggml_q8_0); nullopt for weight-only schemes.
std::optional<numerics::FakeQuantSpec> activation_spec(const LinearScheme& scheme);

}  // namespace qtune::quant
