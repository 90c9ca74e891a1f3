#pragma once
// The sum of a row's terms for the CPU's row kernels: RMSNorm's statistics, attention's softmax denominators
// and D, cross-entropy's and softmax's sums, the gradient norm's blocks. 16 running sums
// (term i into sum i mod 16), then those 16 in order (docs/numerics.md, §6). One chain of dependent additions
// would wait on each one; 16 are one vector, which the compiler forms without reassociating (no fast-math).
#include <cstdint>

namespace qtune::cpu {

// term(i) for i < n, in the accumulation type A. term may also store (attention writes each exponential it sums).
template <class A, class Term>
A row_sum(int64_t n, Term&& term) {
  constexpr int64_t kLanes = 16;
  A lane[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int64_t j = 0; j < kLanes; ++j) lane[j] += term(i + j);
  for (int64_t j = 0; i + j < n; ++j) lane[j] += term(i + j);
  A total = 0;
  for (A v : lane) total += v;
  return total;
}

}  // namespace qtune::cpu
