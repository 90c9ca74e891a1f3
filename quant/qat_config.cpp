#include "quant/qat_config.h"

#include "engine/check.h"
#include "engine/overloaded.h"

namespace qtune::quant {
namespace {

using numerics::FakeQuantKind;
using numerics::FakeQuantSpec;

void check_group_size(std::string_view scheme, int64_t group) {
  QTUNE_CHECK(group == 32 || group == 64 || group == 128 || group == 256, "QAT scheme ", scheme, ": group size ", group,
              " is not supported (use 32, 64, 128 or 256)");
}

void check_group(std::string_view scheme, int64_t group, int64_t features, std::string_view what,
                 std::string_view fqn) {
  check_group_size(scheme, group);
  QTUNE_CHECK(features % group == 0, "QAT scheme ", scheme, ": layer '", fqn, "' has ", what, " = ", features,
              ", which group size ", group,
              " does not divide (pick a group size that divides it, or leave the layer out with a filter)");
}

FakeQuantSpec q4_0_weights() { return {FakeQuantKind::q4_0, 0, 15, -1.0, numerics::kGgmlBlock}; }
FakeQuantSpec q8_0_blocks() { return {FakeQuantKind::q8_0, -127, 127, -1.0, numerics::kGgmlBlock}; }

}  // namespace

LinearScheme parse_linear_scheme(std::string_view name, int64_t group_size) {
  LinearScheme scheme;
  if (name == "8da4w")
    scheme = Int8DynActInt4Weight{};
  else if (name == "int4wo")
    scheme = Int4WeightOnly{};
  else if (name == "q4_0")
    scheme = Q4_0{};
  else if (name == "q8_0")
    scheme = Q8_0{};
  else if (name == "ggml_q4_0")
    scheme = GgmlQ4_0{};
  else if (name == "ggml_q8_0")
    scheme = GgmlQ8_0{};
  else
    QTUNE_FAIL("unknown QAT scheme '", name, "' (valid: 8da4w, int4wo, q4_0, q8_0, ggml_q4_0, ggml_q8_0)");
  if (group_size == 0) return scheme;
  std::visit(Overloaded{[&](Int8DynActInt4Weight& s) { s.group_size = group_size; },
                        [&](Int4WeightOnly& s) { s.group_size = group_size; },
                        [&](const auto&) {
                          QTUNE_FAIL(name, " has fixed blocks of ", numerics::kGgmlBlock,
                                     " weights; a group size (--group-size, "
                                     "quant.group_size) applies to 8da4w and int4wo only, got ",
                                     group_size);
                        }},
             scheme);
  check_group_size(name, group_size);
  return scheme;
}

bool takes_group_size(const LinearScheme& scheme) {
  return std::holds_alternative<Int8DynActInt4Weight>(scheme) || std::holds_alternative<Int4WeightOnly>(scheme);
}

int64_t group_size_of(const LinearScheme& scheme) {
  return std::visit(Overloaded{[](const Int8DynActInt4Weight& s) { return s.group_size; },
                               [](const Int4WeightOnly& s) { return s.group_size; },
                               [](const auto&) { return numerics::kGgmlBlock; }},
                    scheme);
}

std::string scheme_name(const LinearScheme& scheme) {
  return std::visit(
      Overloaded{[](const Int8DynActInt4Weight&) { return std::string("8da4w"); },
                 [](const Int4WeightOnly&) { return std::string("int4wo"); },
                 [](const Q4_0&) { return std::string("q4_0"); }, [](const Q8_0&) { return std::string("q8_0"); },
                 [](const GgmlQ4_0&) { return std::string("ggml_q4_0"); },
                 [](const GgmlQ8_0&) { return std::string("ggml_q8_0"); }},
      scheme);
}

void check_scheme_fits(const LinearScheme& scheme, int64_t in_features, std::string_view fqn) {
  check_group(scheme_name(scheme), group_size_of(scheme), in_features, "in_features", fqn);
}

void check_scheme_fits(const EmbeddingInt4& scheme, int64_t embedding_dim, std::string_view fqn) {
  check_group("embedding int4", scheme.group_size, embedding_dim, "embedding_dim", fqn);
}

FakeQuantSpec weight_spec(const LinearScheme& scheme) {
  return std::visit(
      Overloaded{[](const Int8DynActInt4Weight& s) {
                   return FakeQuantSpec{FakeQuantKind::intx_symmetric, -8, 7, -1.0, s.group_size};
                 },
                 [](const Int4WeightOnly& s) {
                   return FakeQuantSpec{FakeQuantKind::int4_weight_only, 0, 15, -1.0, s.group_size};
                 },
                 [](const Q4_0&) { return q4_0_weights(); }, [](const GgmlQ4_0&) { return q4_0_weights(); },
                 [](const Q8_0&) { return q8_0_blocks(); }, [](const GgmlQ8_0&) { return q8_0_blocks(); }},
      scheme);
}

FakeQuantSpec weight_spec(const EmbeddingInt4& scheme) {
  return {FakeQuantKind::intx_symmetric, -8, 7, -1.0, scheme.group_size};
}

std::optional<FakeQuantSpec> activation_spec(const LinearScheme& scheme) {
  // f32 machine epsilon (2^-23): the torchtune / legacy 8da4w activation precision.
  if (std::holds_alternative<Int8DynActInt4Weight>(scheme))
    return FakeQuantSpec{FakeQuantKind::intx_asymmetric, -128, 127, 1.1920928955078125e-07, 0};
  if (std::holds_alternative<GgmlQ4_0>(scheme) || std::holds_alternative<GgmlQ8_0>(scheme)) return q8_0_blocks();
  return std::nullopt;
}

}  // namespace qtune::quant
