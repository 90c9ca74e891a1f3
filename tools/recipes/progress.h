#pragma once
// The progress display of `qtune run`. On a terminal: one line rewritten in place (`\r`) after every
// step -- step/total, loss, lr, tokens/s, peak memory, ETA. Elsewhere (a log file, CI): a plain line
// every `log_every` steps, or when 10 s passed since the last one, and at the last step.
#include <cstdint>
#include <cstdio>
#include <string>

#include "tools/recipes/hooks.h"

namespace qtune::recipes {

// "1.5 GiB", "12.0 MiB", "512 B"
std::string format_bytes(uint64_t bytes);
// "45s", "3m05s", "2h07m"
std::string format_duration(double seconds);
// "step 12/100 | loss 3.2145 | lr 3.00e-04 | 1234 tok/s | peak 12.0 MiB | ETA 1m23s"; eta_s < 0 omits it.
std::string format_step(const StepMetrics& m, double eta_s);

class ProgressDisplay {
 public:
  ProgressDisplay(std::FILE* out, bool terminal, int64_t log_every);
  void on_step(const StepMetrics& m);
  void on_eval(int64_t step, double eval_loss);
  // Ends a rewritten line, so what is printed next starts on its own.
  void finish();

 private:
  void print_line(const std::string& text);
  std::FILE* out_;
  bool terminal_;
  int64_t log_every_;
  bool line_open_ = false;  // a `\r` line is on screen
  size_t last_width_ = 0;
  // ETA from this process's own pace (a resumed run's first step is not counted from step 0).
  int64_t first_step_ = -1;
  double first_elapsed_ = 0, last_print_elapsed_ = 0;  // StepMetrics::elapsed_s
};

}  // namespace qtune::recipes
