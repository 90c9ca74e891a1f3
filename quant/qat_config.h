#pragma once
// The named QAT schemes (NUMERICS.md §2) and the config of a quantize_ pass (quant/qat.h).
//
// Where the references disagree with NUMERICS.md's text (the math lives in engine/numerics/intx_quant.h):
//  - STE mask: qtune passes the gradient where qmin <= code <= qmax, bounds included, as NUMERICS.md says.
//    torch 2.15's clamp backward excludes the bounds, so torchao 0.18 gives 0 gradient to an element whose
//    code lands exactly on qmin or qmax (tests/test_fake_quant.cpp pins both behaviours).
//  - q8_0: codes are roundf(x * (1/d)) as ggml computes them (NUMERICS.md writes x / d).
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
};
// int4 asymmetric per-group weights, activations untouched ("int4wo").
struct Int4WeightOnly {
  int64_t group_size = 128;  // 32, 64, 128 or 256; must divide in_features
};
// llama.cpp's block formats (blocks of 32 along in_features), weights only.
struct Q4_0 {};
struct Q8_0 {};
// int4 symmetric per-group embedding tables (the 8da4w weight formulas), along embedding_dim.
struct EmbeddingInt4 {
  int64_t group_size = 32;
};

using LinearScheme = std::variant<Int8DynActInt4Weight, Int4WeightOnly, Q4_0, Q8_0>;

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

// "8da4w", "int4wo", "q4_0", "q8_0" with each scheme's default group size; anything else throws listing
// the valid names.
LinearScheme parse_linear_scheme(std::string_view name);
std::string scheme_name(const LinearScheme& scheme);

// Throws naming `fqn` when the scheme's group size is not allowed or does not divide in_features.
void check_scheme_fits(const LinearScheme& scheme, int64_t in_features, std::string_view fqn);
void check_scheme_fits(const EmbeddingInt4& scheme, int64_t embedding_dim, std::string_view fqn);

// What the fake quantizers of a scheme compute, for weights of `dtype` along in_features.
numerics::FakeQuantSpec weight_spec(const LinearScheme& scheme);
numerics::FakeQuantSpec weight_spec(const EmbeddingInt4& scheme);
// Per-token activations; nullopt for weight-only schemes.
std::optional<numerics::FakeQuantSpec> activation_spec(const LinearScheme& scheme);

}  // namespace qtune::quant
