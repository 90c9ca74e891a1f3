// The CPU kernels' branch-free f32 exp against std::exp: within 3 ulp over the normal range, and the
// special values softmax-style kernels rely on (exp(-inf) = 0 exactly for masked scores).
#include <cmath>
#include <limits>

#include "cpu/vec_exp.h"
#include "tests/testing.h"

using qtune::cpu::vec_exp;

namespace {

double ulps(float actual, float expected) {
  return std::fabs(double(actual) - double(expected)) /
         double(std::nextafter(expected, std::numeric_limits<float>::infinity()) - expected);
}

}  // namespace

TEST_CASE("vec_exp is within 3 ulp of std::exp wherever the result is a normal float") {
  double worst = 0;
  for (float x = -87.3f; x < 88.7f; x += 1.7e-3f) worst = std::max(worst, ulps(vec_exp(x), std::exp(x)));
  for (float x = -1.0f; x < 1.0f; x += 1e-5f) worst = std::max(worst, ulps(vec_exp(x), std::exp(x)));
  CHECK(worst <= 3.0);
  CHECK(vec_exp(0.0f) == 1.0f);
}

TEST_CASE("vec_exp special values") {
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(vec_exp(-inf) == 0.0f);
  CHECK(vec_exp(-100.0f) == 0.0f);  // below the smallest normal result: flushed to 0
  CHECK(vec_exp(inf) == inf);
  CHECK(vec_exp(89.0f) == inf);
  CHECK(std::isnan(vec_exp(std::numeric_limits<float>::quiet_NaN())));
  CHECK(std::isfinite(vec_exp(88.7f)));
  CHECK(vec_exp(1.0) == std::exp(1.0));  // f64 is std::exp itself
}
