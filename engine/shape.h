#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace qtune {

using Shape = std::vector<int64_t>;
using Strides = std::vector<int64_t>;

int64_t numel_of(const Shape& shape);
Strides contiguous_strides(const Shape& shape);
std::string shape_str(const Shape& shape);  // "[2, 3, 4]"
// Normalizes a possibly negative dim against rank; throws naming the dim and the rank.
int normalize_dim(int64_t dim, size_t rank);
// NumPy broadcasting of two shapes; throws naming both shapes when they do not broadcast.
Shape broadcast_shapes(const Shape& a, const Shape& b);

}  // namespace qtune
