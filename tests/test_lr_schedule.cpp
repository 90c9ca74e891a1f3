// LR schedules (optim/lr_schedule.h) against transformers' schedules driving torch's LambdaLR
// (tests/golden/optim/lr_schedule.json, written by tools/goldens/gen_optim.py), and option errors.
#include <string>
#include <vector>

#include "optim/lr_schedule.h"
#include "tests/testing.h"

using namespace qtune;
using namespace qtune::optim;

TEST_CASE("schedules match transformers + LambdaLR at every step") {
  const auto cases = testing::load_golden("optim/lr_schedule.json");
  REQUIRE(cases.size() == 8);
  const char* names[] = {"constant", "linear", "cosine"};
  for (const auto& [name, c] : cases) {
    CAPTURE(name);
    const std::vector<double> config = c.at("config").to_vector<double>();
    const ScheduleOptions o{.name = names[static_cast<int>(config[0])],
                            .warmup_steps = static_cast<int64_t>(config[2]),
                            .total_steps = static_cast<int64_t>(config[3]),
                            .min_lr = config[4]};
    const LrSchedule schedule(config[1], o);
    const std::vector<double> expected = c.at("lr").to_vector<double>();
    REQUIRE(expected.size() == static_cast<size_t>(o.total_steps) + 1);
    for (size_t step = 0; step < expected.size(); ++step) {
      CAPTURE(step);
      // The same double operations as transformers' lambdas times LambdaLR's base lr (and the same libm
      // cos as CPython): equal to the last bit. The linear floor is our formula, goldened in Python.
      CHECK(schedule.lr_at(static_cast<int64_t>(step)) == expected[step]);
    }
  }
}

TEST_CASE("warmup starts at 0, the decay ends at min_lr and stays there") {
  const LrSchedule cosine(1e-3, {.name = "cosine", .warmup_steps = 10, .total_steps = 110, .min_lr = 1e-4});
  CHECK(cosine.lr_at(0) == 0.0);
  CHECK(cosine.lr_at(5) == doctest::Approx(5e-4));
  CHECK(cosine.lr_at(10) == doctest::Approx(1e-3));
  CHECK(cosine.lr_at(60) == doctest::Approx(5.5e-4));
  CHECK(cosine.lr_at(110) == doctest::Approx(1e-4));
  // transformers' cosine would climb back up past the end; ours holds the floor.
  CHECK(cosine.lr_at(150) == doctest::Approx(1e-4));
  CHECK(cosine.lr_at(1000) == doctest::Approx(1e-4));
  const LrSchedule linear(2e-3, {.name = "linear", .warmup_steps = 0, .total_steps = 4, .min_lr = 4e-4});
  CHECK(linear.lr_at(0) == doctest::Approx(2e-3));
  CHECK(linear.lr_at(2) == doctest::Approx(1.2e-3));
  CHECK(linear.lr_at(4) == doctest::Approx(4e-4));
  CHECK(linear.lr_at(9) == doctest::Approx(4e-4));
  const LrSchedule constant(3e-4, {});
  CHECK(constant.lr_at(0) == 3e-4);
  CHECK(constant.lr_at(1'000'000) == 3e-4);
  CHECK(constant.base_lr() == 3e-4);
  CHECK(constant.options().name == "constant");
}

TEST_CASE("invalid schedule options name the field") {
  auto fails = [](double base_lr, const ScheduleOptions& o, const std::string& message) {
    CAPTURE(message);
    CHECK_THROWS_WITH_AS(LrSchedule(base_lr, o), doctest::Contains(message.c_str()), Error);
  };
  fails(1e-3, {.name = "cosine_restarts", .total_steps = 10}, "schedule.name: unknown schedule 'cosine_restarts'");
  fails(1e-3, {.name = "linear"}, "schedule.total_steps must be > 0 for the linear schedule");
  fails(1e-3, {.name = "cosine", .warmup_steps = 11, .total_steps = 10},
        "schedule.warmup_steps (11) must not exceed schedule.total_steps (10)");
  fails(1e-3, {.warmup_steps = -1}, "schedule.warmup_steps must be >= 0");
  fails(1e-3, {.name = "cosine", .total_steps = 10, .min_lr = 2e-3}, "schedule.min_lr must be in [0, base lr 0.001]");
  fails(1e-3, {.name = "cosine", .total_steps = 10, .min_lr = -1e-5}, "schedule.min_lr must be in");
  fails(-1e-3, {}, "base lr must be a finite number >= 0");
  // A constant schedule needs no length.
  CHECK(LrSchedule(1e-3, {.warmup_steps = 5}).lr_at(5) == 1e-3);
}
