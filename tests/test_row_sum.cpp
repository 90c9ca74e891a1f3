// cpu/row_sum.h, the row sum of the CPU's row kernels (RMSNorm, attention, cross-entropy, softmax): its order is part
// of the numerics (docs/numerics.md §6), so it is checked bit for bit against that order written out another way, and
// its term is evaluated once per index, in order (attention stores each exponential from inside the term).
#include <cmath>
#include <cstdint>
#include <vector>

#include "cpu/row_sum.h"
#include "engine/tensor.h"
#include "tests/testing.h"

using qtune::cpu::row_sum;

namespace {

// docs/numerics.md §6 word for word: term i into sum i mod 16, then ((s0 + s1) + s2) + ... + s15.
template <class A>
A documented_order(const std::vector<A>& x) {
  A sums[16] = {};
  for (size_t i = 0; i < x.size(); ++i) sums[i % 16] += x[i];
  A total = sums[0];
  for (int k = 1; k < 16; ++k) total += sums[k];
  return total;
}

template <class A>
std::vector<A> spread_values(int64_t n, uint64_t seed) {
  // Magnitudes from 1e-6 to 1e6 and both signs, so that the grouping shows in the rounding (the serial sum
  // below differs).
  const std::vector<double> u = qtune::testing::random_f64({n}, seed, -1.0, 1.0).to_vector<double>();
  const std::vector<double> e = qtune::testing::random_f64({n}, seed + 1, -6.0, 6.0).to_vector<double>();
  std::vector<A> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) x[size_t(i)] = A(u[size_t(i)] * std::pow(10.0, e[size_t(i)]));
  return x;
}

template <class A>
void check_order() {
  for (int64_t n : {0, 1, 15, 16, 17, 24, 33, 45, 520, 1000}) {
    CAPTURE(n);
    const std::vector<A> x = spread_values<A>(n, 40 + uint64_t(n));
    const A got = row_sum<A>(n, [&](int64_t i) { return x[size_t(i)]; });
    CHECK(got == documented_order(x));
  }
}

}  // namespace

TEST_CASE("row_sum adds in the documented order, bit for bit (f32 and f64)") {
  check_order<float>();
  check_order<double>();
  // The order matters for these values: a plain left-to-right sum gives another result.
  const std::vector<float> x = spread_values<float>(1000, 7);
  float serial = 0;
  for (float v : x) serial += v;
  CHECK(serial != documented_order(x));
}

TEST_CASE("row_sum evaluates its term once per index, in increasing order") {
  for (int64_t n : {0, 5, 16, 37}) {
    CAPTURE(n);
    std::vector<int64_t> seen;
    const double sum = row_sum<double>(n, [&](int64_t i) {
      seen.push_back(i);
      return double(i);
    });
    CHECK(sum == double(n * (n - 1) / 2));
    REQUIRE(seen.size() == size_t(n));
    for (int64_t i = 0; i < n; ++i) CHECK(seen[size_t(i)] == i);
  }
}
