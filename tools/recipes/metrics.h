#pragma once
// metrics.jsonl: one JSON object per line, appended as training goes. Step lines hold step, loss, lr,
// grad_norm, tokens_per_s, peak_mem_bytes, elapsed_s; eval lines hold step, eval_loss, eval_perplexity.
// Doubles are written with enough digits to read back the same bits.
#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tools/recipes/hooks.h"

namespace qtune::recipes {

class MetricsLog {
 public:
  // Starts a new file at `path` (replacing any).
  static MetricsLog create(const std::string& path);
  // Continues the file of a resumed run: lines of steps after `step` (written after the checkpoint the
  // run resumes from) and a line torn by a crash are dropped first.
  static MetricsLog resume(const std::string& path, int64_t step);

  void log_step(const StepMetrics& m);
  void log_eval(int64_t step, double eval_loss);

 private:
  explicit MetricsLog(const std::string& path);
  void write(const nlohmann::json& line);
  std::string path_;
  std::ofstream out_;
};

// Every well-formed line of a metrics file (an Error when the file is missing).
std::vector<nlohmann::json> read_metrics(const std::string& path);

}  // namespace qtune::recipes
