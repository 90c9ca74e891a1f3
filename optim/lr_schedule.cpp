#include "optim/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "engine/check.h"

namespace qtune::optim {

LrSchedule::LrSchedule(double base_lr, const ScheduleOptions& options) : base_lr_(base_lr), options_(options) {
  const ScheduleOptions& o = options_;
  QTUNE_CHECK(o.name == "constant" || o.name == "linear" || o.name == "cosine", "schedule.name: unknown schedule '",
              o.name, "' (expected constant, linear or cosine)");
  QTUNE_CHECK(std::isfinite(base_lr) && base_lr >= 0.0, "schedule: the base lr must be a finite number >= 0, got ",
              base_lr);
  QTUNE_CHECK(o.warmup_steps >= 0, "schedule.warmup_steps must be >= 0, got ", o.warmup_steps);
  QTUNE_CHECK(o.total_steps >= 0, "schedule.total_steps must be >= 0, got ", o.total_steps);
  // A constant schedule has no length; the decaying ones need one that holds the warmup.
  if (o.name != "constant") {
    QTUNE_CHECK(o.total_steps > 0, "schedule.total_steps must be > 0 for the ", o.name, " schedule");
  }
  QTUNE_CHECK(o.total_steps == 0 || o.warmup_steps <= o.total_steps, "schedule.warmup_steps (", o.warmup_steps,
              ") must not exceed schedule.total_steps (", o.total_steps, ")");
  QTUNE_CHECK(o.min_lr >= 0.0 && o.min_lr <= base_lr, "schedule.min_lr must be in [0, base lr ", base_lr, "], got ",
              o.min_lr);
}

double LrSchedule::lr_at(int64_t step) const {
  const ScheduleOptions& o = options_;
  // The arithmetic follows transformers' lr lambdas (in double) times LambdaLR's base lr.
  if (step < o.warmup_steps)
    return base_lr_ * (static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, o.warmup_steps)));
  if (o.name == "constant") return base_lr_;
  const double decay_steps = static_cast<double>(std::max<int64_t>(1, o.total_steps - o.warmup_steps));
  if (o.name == "linear") {
    const double factor = std::max(0.0, static_cast<double>(o.total_steps - step) / decay_steps);
    // transformers has no linear schedule with a floor; this one decays from base_lr to min_lr.
    return o.min_lr + (base_lr_ - o.min_lr) * factor;
  }
  // Cosine (get_cosine_with_min_lr_schedule_with_warmup: the floor enters as a rate of the base lr, and
  // a rate of 0 gives get_cosine_schedule_with_warmup exactly). Past total_steps the lr stays at min_lr
  // where transformers' curve would rise again.
  const double progress = std::min(1.0, static_cast<double>(step - o.warmup_steps) / decay_steps);
  const double factor = 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
  const double min_lr_rate = base_lr_ > 0.0 ? o.min_lr / base_lr_ : 0.0;
  return base_lr_ * std::max(0.0, factor * (1.0 - min_lr_rate) + min_lr_rate);
}

}  // namespace qtune::optim
