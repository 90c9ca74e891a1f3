#pragma once
// Helpers shared by the tests: closeness checks, the f64 finite-difference gradient checker and the
// golden-file loader. Goldens are JSON files under tests/golden/ written by tools/goldens/*.py.
#include <doctest/doctest.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace qtune::testing {

// Max |a - e| / (atol + rtol * |e|) over elements; <= 1 means close. Shapes must match.
double closeness(const Tensor& actual, const Tensor& expected, double rtol, double atol);

#define QTUNE_CHECK_CLOSE(actual, expected, rtol, atol)                                                              \
  do {                                                                                                               \
    const ::qtune::Tensor qtune_a_ = (actual), qtune_e_ = (expected);                                                \
    REQUIRE_MESSAGE(qtune_a_.shape() == qtune_e_.shape(), "shape ", ::qtune::shape_str(qtune_a_.shape()),            \
                    " vs expected ", ::qtune::shape_str(qtune_e_.shape()));                                          \
    const double qtune_c_ = ::qtune::testing::closeness(qtune_a_, qtune_e_, (rtol), (atol));                         \
    CHECK_MESSAGE(qtune_c_ <= 1.0, #actual " vs " #expected ": worst error is ", qtune_c_, "x the tolerance (rtol ", \
                  (rtol), ", atol ", (atol), ")");                                                                   \
  } while (0)

using GradFn = std::function<Tensor(const std::vector<Tensor>& inputs)>;

// Compares the analytic gradient of sum(fn(inputs) * w) (w: fixed random weights) with central
// differences, for every input that requires grad. Inputs must be f64. Returns the worst
// closeness (<= 1 passes) and reports each failing element through doctest.
double gradcheck(const GradFn& fn, const std::vector<Tensor>& inputs, double eps = 1e-6, double rtol = 1e-5,
                 double atol = 1e-7);

// f64 tensor of `shape` with values from a fixed-seed uniform [low, high).
Tensor random_f64(const Shape& shape, uint64_t seed, double low = -1.0, double high = 1.0);

// One golden file: case name -> tensor name -> tensor (f64 or i64 as stored).
using GoldenCase = std::map<std::string, Tensor>;
std::map<std::string, GoldenCase> load_golden(const std::string& file_name);

}  // namespace qtune::testing
