#include "tests/testing.h"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/autograd.h"
#include "engine/rng.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"

namespace qtune::testing {

double closeness(const Tensor& actual, const Tensor& expected, double rtol, double atol) {
  const auto a = actual.to_vector<double>(), e = expected.to_vector<double>();
  double worst = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    if ((std::isnan(e[i]) && std::isnan(a[i])) || a[i] == e[i]) continue;  // exact matches pass at zero tolerance
    const double err = std::fabs(a[i] - e[i]) / (atol + rtol * std::fabs(e[i]));
    worst = std::isnan(err) ? INFINITY : std::max(worst, err);
  }
  return worst;
}

Tensor random_f64(const Shape& shape, uint64_t seed, double low, double high) {
  Generator gen(seed);
  return rand(shape, DType::f64, Device::cpu(), &gen, low, high);
}

double gradcheck(const GradFn& fn, const std::vector<Tensor>& inputs, double eps, double rtol, double atol) {
  for (const Tensor& t : inputs)
    if (t.defined()) REQUIRE_MESSAGE(t.dtype() == DType::f64, "gradcheck needs f64 inputs");
  // Analytic.
  std::vector<Tensor> leaves;
  for (const Tensor& t : inputs) {
    if (!t.defined()) {
      leaves.push_back(t);
      continue;
    }
    Tensor leaf = t.detach().clone();
    leaf.requires_grad_(t.requires_grad());
    leaves.push_back(leaf);
  }
  Tensor out = fn(leaves);
  const Tensor weights = random_f64(out.shape(), 1234, -1.0, 1.0);
  ops::sum(ops::mul(out, weights)).backward();

  auto objective = [&](const std::vector<Tensor>& xs) {
    NoGradGuard no_grad;
    return ops::sum(ops::mul(fn(xs), weights)).item();
  };

  double worst = 0.0;
  for (size_t i = 0; i < leaves.size(); ++i) {
    if (!leaves[i].defined() || !leaves[i].requires_grad()) continue;
    REQUIRE_MESSAGE(leaves[i].grad().defined(), "input ", i, " received no gradient");
    const auto analytic = leaves[i].grad().to_vector<double>();
    std::vector<Tensor> probe;
    for (const Tensor& t : leaves) probe.push_back(t.defined() ? t.detach().clone() : t);
    double* x = probe[i].data<double>();
    for (int64_t j = 0; j < probe[i].numel(); ++j) {
      const double saved = x[j];
      x[j] = saved + eps;
      const double plus = objective(probe);
      x[j] = saved - eps;
      const double minus = objective(probe);
      x[j] = saved;
      const double numeric = (plus - minus) / (2 * eps);
      const double err = std::fabs(analytic[static_cast<size_t>(j)] - numeric) / (atol + rtol * std::fabs(numeric));
      if (!(err <= 1.0))
        FAIL_CHECK("gradient of input ", i, " element ", j, ": analytic ", analytic[static_cast<size_t>(j)],
                   " numeric ", numeric);
      worst = std::max(worst, std::isnan(err) ? INFINITY : err);
    }
  }
  return worst;
}

std::map<std::string, GoldenCase> load_golden(const std::string& file_name) {
  const std::string path = std::string(QTUNE_GOLDEN_DIR) + "/" + file_name;
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "missing golden file ", path, " (regenerate with tools/goldens/)");
  const nlohmann::json doc = nlohmann::json::parse(in);
  std::map<std::string, GoldenCase> out;
  for (const auto& [case_name, tensors] : doc.at("cases").items()) {
    GoldenCase c;
    for (const auto& [name, t] : tensors.items()) {
      const Shape shape = t.at("shape").get<Shape>();
      const std::string dtype = t.at("dtype").get<std::string>();
      if (dtype == "i64") {
        c[name] = Tensor::from_vector(t.at("data").get<std::vector<int64_t>>(), shape);
      } else {
        std::vector<double> values;
        for (const auto& v : t.at("data")) {
          // JSON has no NaN/inf: the generator writes them as strings.
          if (v.is_string()) {
            const std::string s = v.get<std::string>();
            values.push_back(s == "nan" ? NAN : (s == "inf" ? INFINITY : -INFINITY));
          } else {
            values.push_back(v.get<double>());
          }
        }
        c[name] = Tensor::from_doubles(values, shape, DType::f64);
      }
    }
    out[case_name] = std::move(c);
  }
  return out;
}

}  // namespace qtune::testing
