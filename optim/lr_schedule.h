#pragma once
// Learning-rate schedules: a pure function of the step, so resuming needs nothing but the step count.
// Steps count optimizer updates from 0 (the lr used by the first update is lr_at(0)).
#include <cstdint>
#include <string>

namespace qtune::optim {

struct ScheduleOptions {
  std::string name = "constant";  // "constant", "linear" or "cosine"
  int64_t warmup_steps = 0;       // linear ramp from 0 to the base lr over these steps
  int64_t total_steps = 0;        // length of the run, warmup included (needed by linear and cosine)
  double min_lr = 0.0;            // floor the decay ends at (absolute lr)
};

class LrSchedule {
 public:
  // Validates the options (known name, warmup <= total, 0 <= min_lr <= base_lr); errors name the field
  // as `schedule.<field>`.
  LrSchedule(double base_lr, const ScheduleOptions& options);
  // lr for the update number `step` (0-based), as transformers' get_{constant,linear,cosine}_schedule_with_warmup
  // (get_cosine_with_min_lr_schedule_with_warmup for the floor) compute it through torch's LambdaLR:
  //   step < warmup:   base_lr * step / warmup  (so the first update uses 0 when warmup > 0)
  //   constant:        base_lr
  //   linear:          min_lr + (base_lr - min_lr) * max(0, (total - step) / (total - warmup))
  //                    (transformers has no floor for linear; with min_lr 0 this is its schedule)
  //   cosine:          min_lr + (base_lr - min_lr) * 0.5 * (1 + cos(pi * progress)),
  //                    progress = (step - warmup) / (total - warmup), clamped to [0, 1]
  //                    (computed as transformers does: base_lr * (f * (1 - r) + r), r = min_lr / base_lr;
  //                    past total it stays at min_lr where transformers' curve rises again)
  double lr_at(int64_t step) const;
  double base_lr() const { return base_lr_; }
  const ScheduleOptions& options() const { return options_; }

 private:
  double base_lr_;
  ScheduleOptions options_;
};

}  // namespace qtune::optim
