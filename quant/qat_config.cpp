#include "quant/qat_config.h"

#include "engine/check.h"

namespace qtune::quant {
namespace {

using numerics::FakeQuantKind;
using numerics::FakeQuantSpec;

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};

int64_t group_size_of(const LinearScheme& scheme) {
  return std::visit(
      Overloaded{[](const Int8DynActInt4Weight& s) { return s.group_size; },
                 [](const Int4WeightOnly& s) { return s.group_size; }, [](const auto&) { return int64_t{32}; }},
      scheme);
}

void check_group(std::string_view scheme, int64_t group, int64_t features, std::string_view what,
                 std::string_view fqn) {
  QTUNE_CHECK(group == 32 || group == 64 || group == 128 || group == 256, "QAT scheme ", scheme, ": group size ", group,
              " is not supported (use 32, 64, 128 or 256)");
  QTUNE_CHECK(features % group == 0, "QAT scheme ", scheme, ": layer '", fqn, "' has ", what, " = ", features,
              ", which group size ", group,
              " does not divide (pick a group size that divides it, or leave the layer out with a filter)");
}

}  // namespace

LinearScheme parse_linear_scheme(std::string_view name) {
  if (name == "8da4w") return Int8DynActInt4Weight{};
  if (name == "int4wo") return Int4WeightOnly{};
  if (name == "q4_0") return Q4_0{};
  if (name == "q8_0") return Q8_0{};
  QTUNE_FAIL("unknown QAT scheme '", name, "' (valid: 8da4w, int4wo, q4_0, q8_0)");
}

std::string scheme_name(const LinearScheme& scheme) {
  return std::visit(
      Overloaded{[](const Int8DynActInt4Weight&) { return std::string("8da4w"); },
                 [](const Int4WeightOnly&) { return std::string("int4wo"); },
                 [](const Q4_0&) { return std::string("q4_0"); }, [](const Q8_0&) { return std::string("q8_0"); }},
      scheme);
}

void check_scheme_fits(const LinearScheme& scheme, int64_t in_features, std::string_view fqn) {
  check_group(scheme_name(scheme), group_size_of(scheme), in_features, "in_features", fqn);
}

void check_scheme_fits(const EmbeddingInt4& scheme, int64_t embedding_dim, std::string_view fqn) {
  check_group("embedding int4", scheme.group_size, embedding_dim, "embedding_dim", fqn);
}

FakeQuantSpec weight_spec(const LinearScheme& scheme) {
  return std::visit(Overloaded{[](const Int8DynActInt4Weight& s) {
                                 return FakeQuantSpec{FakeQuantKind::intx_symmetric, -8, 7, -1.0, s.group_size};
                               },
                               [](const Int4WeightOnly& s) {
                                 return FakeQuantSpec{FakeQuantKind::int4_weight_only, 0, 15, -1.0, s.group_size};
                               },
                               [](const Q4_0&) {
                                 return FakeQuantSpec{FakeQuantKind::q4_0, 0, 15, -1.0, 32};
                               },
                               [](const Q8_0&) {
                                 return FakeQuantSpec{FakeQuantKind::q8_0, -127, 127, -1.0, 32};
                               }},
                    scheme);
}

FakeQuantSpec weight_spec(const EmbeddingInt4& scheme) {
  return {FakeQuantKind::intx_symmetric, -8, 7, -1.0, scheme.group_size};
}

std::optional<FakeQuantSpec> activation_spec(const LinearScheme& scheme) {
  // f32 machine epsilon (2^-23): the torchtune / legacy 8da4w activation precision.
  if (std::holds_alternative<Int8DynActInt4Weight>(scheme))
    return FakeQuantSpec{FakeQuantKind::intx_asymmetric, -128, 127, 1.1920928955078125e-07, 0};
  return std::nullopt;
}

}  // namespace qtune::quant
