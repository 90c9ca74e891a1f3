#include "tools/recipes/progress.h"

#include <algorithm>
#include <cmath>

#include <fmt/core.h>

namespace qtune::recipes {

std::string format_bytes(uint64_t bytes) {
  const double b = static_cast<double>(bytes);
  if (b >= 1024.0 * 1024 * 1024) return fmt::format("{:.1f} GiB", b / (1024.0 * 1024 * 1024));
  if (b >= 1024.0 * 1024) return fmt::format("{:.1f} MiB", b / (1024.0 * 1024));
  if (b >= 1024.0) return fmt::format("{:.1f} KiB", b / 1024.0);
  return fmt::format("{} B", bytes);
}

std::string format_duration(double seconds) {
  const int64_t s = std::llround(std::max(seconds, 0.0));
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}h{:02}m", s / 3600, s % 3600 / 60);
}

std::string format_step(const StepMetrics& m, double eta_s) {
  std::string line = fmt::format("step {}/{} | loss {:.4f} | lr {:.2e} | {:.0f} tok/s | peak {}", m.step, m.total_steps,
                                 m.loss, m.lr, m.tokens_per_s, format_bytes(m.peak_mem_bytes));
  if (eta_s >= 0) line += " | ETA " + format_duration(eta_s);
  return line;
}

ProgressDisplay::ProgressDisplay(std::FILE* out, bool terminal, int64_t log_every)
    : out_(out), terminal_(terminal), log_every_(log_every < 1 ? 1 : log_every) {}

void ProgressDisplay::on_step(const StepMetrics& m) {
  // The run's clock is the steps' own (m.elapsed_s): the trainer reports the steps of a logging interval
  // together, after the GPU ran them, with times spread over the interval.
  if (first_step_ < 0) {
    // The first step of this process carries start-up costs; the pace is measured from its end.
    first_step_ = m.step;
    first_elapsed_ = m.elapsed_s;
    last_print_elapsed_ = m.elapsed_s;
  }
  double eta = -1;
  if (m.step > first_step_) {
    const double per_step = (m.elapsed_s - first_elapsed_) / double(m.step - first_step_);
    eta = per_step * double(m.total_steps - m.step);
  }
  const bool last = m.step == m.total_steps;
  if (!terminal_ && !last && m.step % log_every_ != 0 && m.elapsed_s - last_print_elapsed_ < 10.0) return;
  last_print_elapsed_ = m.elapsed_s;
  print_line(format_step(m, eta));
}

void ProgressDisplay::on_eval(int64_t step, double eval_loss) {
  finish();
  fmt::print(out_, "eval at step {} | loss {:.4f} | perplexity {:.2f}\n", step, eval_loss, std::exp(eval_loss));
  std::fflush(out_);
}

void ProgressDisplay::finish() {
  if (!line_open_) return;
  fmt::print(out_, "\n");
  std::fflush(out_);
  line_open_ = false;
  last_width_ = 0;
}

void ProgressDisplay::print_line(const std::string& text) {
  if (!terminal_) {
    fmt::print(out_, "{}\n", text);
  } else {
    // Spaces over what is left of a longer previous line.
    const size_t pad = last_width_ > text.size() ? last_width_ - text.size() : 0;
    fmt::print(out_, "\r{}{:{}}", text, "", pad);
    last_width_ = text.size();
    line_open_ = true;
  }
  std::fflush(out_);
}

}  // namespace qtune::recipes
