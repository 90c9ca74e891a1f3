#pragma once
// std::visit over a variant with one lambda per alternative: std::visit(Overloaded{[](const A&) {...},
// [](const B&) {...}}, v).

namespace qtune {

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
// Spelled out for compilers without aggregate deduction (clang 14, which builds the fuzz targets).
template <class... F>
Overloaded(F...) -> Overloaded<F...>;

}  // namespace qtune
