// Sampling (temperature, top-k, top-p, inverse CDF) on hand-made distributions, and generation with a
// KV cache against full forwards of a golden checkpoint.
#include <doctest/doctest.h>

#include <cmath>

#include "engine/autograd.h"
#include "models/generate.h"
#include "models/hf_checkpoint.h"
#include "tests/llama_fixtures.h"
#include "tests/testing.h"

using namespace qtune;
using namespace qtune::models;

namespace {

// Logits whose softmax at temperature 1 is exactly proportional to `probs`.
std::vector<float> logits_of(const std::vector<double>& probs) {
  std::vector<float> out;
  for (double p : probs) out.push_back(static_cast<float>(std::log(p)));
  return out;
}

SamplingOptions with(double temperature, int64_t top_k = 0, double top_p = 1.0) {
  SamplingOptions o;
  o.temperature = temperature;
  o.top_k = top_k;
  o.top_p = top_p;
  return o;
}

// How often each id comes out for u on a fine regular grid: the distribution sample_token realizes.
std::vector<double> frequencies(const std::vector<float>& logits, const SamplingOptions& o) {
  const int n = 100000;
  std::vector<double> f(logits.size(), 0.0);
  for (int i = 0; i < n; ++i) f[static_cast<size_t>(sample_token(logits, o, (i + 0.5) / n))] += 1.0 / n;
  return f;
}

void check_distribution(const std::vector<double>& actual, const std::vector<double>& expected) {
  REQUIRE(actual.size() == expected.size());
  for (size_t i = 0; i < actual.size(); ++i) {
    CAPTURE(i);
    CHECK(std::fabs(actual[i] - expected[i]) <= 2e-4);
  }
}

// Greedy continuation computed the slow way: a full forward over the whole sequence for every token.
std::vector<int32_t> greedy_by_full_forward(Llama& model, std::vector<int32_t> seq, int64_t n) {
  NoGradGuard no_grad;
  std::vector<int32_t> out;
  for (int64_t i = 0; i < n; ++i) {
    const Tensor logits = model.forward(Tensor::from_vector(seq, {1, static_cast<int64_t>(seq.size())}));
    const auto row = logits.select(1, logits.size(1) - 1).to_vector<float>();
    const auto id = static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
    out.push_back(id);
    seq.push_back(id);
  }
  return out;
}

}  // namespace

TEST_CASE("sample_token: temperature 0 is argmax, lowest id on ties") {
  CHECK(sample_token({0.1f, 3.0f, -2.0f, 3.0f}, with(0.0), 0.99) == 1);
  CHECK(sample_token({5.0f}, with(0.0), 0.0) == 0);
}

TEST_CASE("sample_token: inverse CDF in order of decreasing probability") {
  // probabilities 0.2, 0.5, 0.3 -> walked as ids 1 (0.5), 2 (0.3), 0 (0.2)
  const auto logits = logits_of({0.2, 0.5, 0.3});
  const SamplingOptions t1 = with(1.0);
  CHECK(sample_token(logits, t1, 0.0) == 1);
  CHECK(sample_token(logits, t1, 0.49) == 1);
  CHECK(sample_token(logits, t1, 0.51) == 2);
  CHECK(sample_token(logits, t1, 0.79) == 2);
  CHECK(sample_token(logits, t1, 0.81) == 0);
  CHECK(sample_token(logits, t1, 0.999999) == 0);
  check_distribution(frequencies(logits, t1), {0.2, 0.5, 0.3});
}

TEST_CASE("sample_token: temperature reshapes the distribution") {
  const auto logits = logits_of({0.2, 0.5, 0.3});
  // T = 2: p_i proportional to sqrt(p_i).
  const double s = std::sqrt(0.2) + std::sqrt(0.5) + std::sqrt(0.3);
  check_distribution(frequencies(logits, with(2.0)), {std::sqrt(0.2) / s, std::sqrt(0.5) / s, std::sqrt(0.3) / s});
  // T = 0.5: p_i proportional to p_i^2.
  const double q = 0.04 + 0.25 + 0.09;
  check_distribution(frequencies(logits, with(0.5)), {0.04 / q, 0.25 / q, 0.09 / q});
}

TEST_CASE("sample_token: top-k keeps the k most likely and renormalizes") {
  const auto logits = logits_of({0.1, 0.4, 0.15, 0.35});
  check_distribution(frequencies(logits, with(1.0, 2)), {0.0, 0.4 / 0.75, 0.0, 0.35 / 0.75});
  check_distribution(frequencies(logits, with(1.0, 1)), {0.0, 1.0, 0.0, 0.0});
  check_distribution(frequencies(logits, with(1.0, 10)), {0.1, 0.4, 0.15, 0.35});
}

TEST_CASE("sample_token: top-p keeps the smallest prefix reaching p") {
  const auto logits = logits_of({0.1, 0.4, 0.15, 0.35});
  // Sorted: 0.4, 0.35, 0.15, 0.1; cumulative 0.4, 0.75, 0.9, 1.0.
  check_distribution(frequencies(logits, with(1.0, 0, 0.3)), {0.0, 1.0, 0.0, 0.0});
  check_distribution(frequencies(logits, with(1.0, 0, 0.7)), {0.0, 0.4 / 0.75, 0.0, 0.35 / 0.75});
  check_distribution(frequencies(logits, with(1.0, 0, 0.8)), {0.0, 0.4 / 0.9, 0.15 / 0.9, 0.35 / 0.9});
  // Top-p applies after top-k: of {0.4, 0.35, 0.15} renormalized (0.444, 0.389, 0.167), 0.5 needs two.
  check_distribution(frequencies(logits, with(1.0, 3, 0.5)), {0.0, 0.4 / 0.75, 0.0, 0.35 / 0.75});
  check_distribution(frequencies(logits, with(1.0, 0, 1e-9)), {0.0, 1.0, 0.0, 0.0});
}

TEST_CASE("sample_token: bad arguments") {
  const std::vector<float> logits{1.0f, 2.0f};
  CHECK_THROWS_WITH_AS(sample_token(logits, with(-1.0), 0.5), doctest::Contains("temperature"), Error);
  CHECK_THROWS_WITH_AS(sample_token(logits, with(1.0, -1), 0.5), doctest::Contains("top_k"), Error);
  CHECK_THROWS_WITH_AS(sample_token(logits, with(1.0, 0, 0.0), 0.5), doctest::Contains("top_p"), Error);
  CHECK_THROWS_WITH_AS(sample_token(logits, with(1.0, 0, 1.5), 0.5), doctest::Contains("top_p"), Error);
  CHECK_THROWS_WITH_AS(sample_token(logits, with(1.0), 1.0), doctest::Contains("u must be"), Error);
  CHECK_THROWS_WITH_AS(sample_token({}, with(1.0), 0.5), doctest::Contains("empty"), Error);
  CHECK_THROWS_WITH_AS(sample_token({1.0f, NAN}, with(1.0), 0.5), doctest::Contains("NaN"), Error);
}

TEST_CASE("generate: greedy decoding with the cache equals argmax of full forwards") {
  auto model = load_llama(testing::llama_golden_dir("untied_gqa_headdim"));
  const std::vector<int32_t> prompt{5, 17, 42, 3};
  SamplingOptions greedy = with(0.0);
  greedy.max_new_tokens = 12;
  greedy.stop_ids = {-1};  // never stop early: compare all 12
  const auto out = generate(*model, prompt, greedy);
  REQUIRE(out.size() == 12);
  CHECK(out == greedy_by_full_forward(*model, prompt, 12));

  SUBCASE("top_k = 1 and a tiny top_p are greedy at any temperature") {
    SamplingOptions k1 = greedy;
    k1.temperature = 1.5;
    k1.top_k = 1;
    k1.seed = 11;
    CHECK(generate(*model, prompt, k1) == out);
    SamplingOptions p0 = greedy;
    p0.temperature = 1.5;
    p0.top_p = 1e-6;
    p0.seed = 12;
    CHECK(generate(*model, prompt, p0) == out);
  }
  SUBCASE("stop ids end generation and are returned") {
    // The first id from position 3 on that has not come out before: generation must end right there.
    size_t at = 3;
    while (at < out.size() && std::find(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(at), out[at]) !=
                                  out.begin() + static_cast<std::ptrdiff_t>(at))
      ++at;
    REQUIRE(at < out.size());
    SamplingOptions stop = greedy;
    stop.stop_ids = {999, out[at]};
    CHECK(generate(*model, prompt, stop) ==
          std::vector<int32_t>(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(at) + 1));
  }
  SUBCASE("the config's eos ids are the default stop ids") {
    SamplingOptions eos = greedy;
    eos.stop_ids.clear();
    const auto ids = generate(*model, prompt, eos);
    const auto stop = std::find(out.begin(), out.end(), 2);  // golden configs have eos_token_id 2
    CHECK(ids == std::vector<int32_t>(out.begin(), stop == out.end() ? out.end() : stop + 1));
  }
  SUBCASE("on_token sees every id and can stop") {
    std::vector<int32_t> seen;
    const auto ids = generate(*model, prompt, greedy, [&](int32_t id) {
      seen.push_back(id);
      return seen.size() < 5;
    });
    CHECK(ids == std::vector<int32_t>(out.begin(), out.begin() + 5));
    CHECK(seen == ids);
  }
  SUBCASE("max_new_tokens") {
    SamplingOptions few = greedy;
    few.max_new_tokens = 3;
    CHECK(generate(*model, prompt, few) == std::vector<int32_t>(out.begin(), out.begin() + 3));
    few.max_new_tokens = 0;
    CHECK(generate(*model, prompt, few).empty());
  }
}

TEST_CASE("generate: sampling is reproducible per seed") {
  auto model = load_llama(testing::llama_golden_dir("untied_mha"));
  model->train();
  const std::vector<int32_t> prompt{1, 9, 30};
  SamplingOptions o = with(1.3, 40, 0.95);
  o.max_new_tokens = 24;
  o.stop_ids = {-1};
  o.seed = 5;
  const auto a = generate(*model, prompt, o), b = generate(*model, prompt, o);
  CHECK(a.size() == 24);
  CHECK(a == b);
  o.seed = 6;
  CHECK(generate(*model, prompt, o) != a);
  CHECK(model->is_training());  // the mode is restored
  for (int32_t id : a) CHECK((id >= 0 && id < model->config().vocab_size));

  CHECK_THROWS_WITH_AS(generate(*model, {}, o), doctest::Contains("prompt is empty"), Error);
  CHECK_THROWS_WITH_AS(generate(*model, {1, 500}, o), doctest::Contains("500"), Error);
}
