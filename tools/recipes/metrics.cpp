#include "tools/recipes/metrics.h"

#include <cmath>
#include <filesystem>

#include "engine/check.h"
#include "engine/io/atomic_file.h"

namespace qtune::recipes {

using nlohmann::json;

MetricsLog::MetricsLog(const std::string& path) : path_(path), out_(path, std::ios::app | std::ios::binary) {
  QTUNE_CHECK(out_, "cannot open ", path, " for writing");
}

MetricsLog MetricsLog::create(const std::string& path) {
  io::write_file_atomic(path, "");
  return MetricsLog(path);
}

MetricsLog MetricsLog::resume(const std::string& path, int64_t step) {
  std::string kept;
  if (std::filesystem::exists(path)) {
    for (const json& line : read_metrics(path)) {
      if (line.value("step", int64_t{0}) <= step) kept += line.dump() + "\n";
    }
  }
  io::write_file_atomic(path, kept);
  return MetricsLog(path);
}

void MetricsLog::write(const json& line) {
  out_ << line.dump() << '\n';
  out_.flush();  // a plotting or tailing user sees each step as it lands
  QTUNE_CHECK(out_, "writing ", path_, " failed (disk full?)");
}

void MetricsLog::log_step(const StepMetrics& m) {
  write({{"step", m.step},
         {"loss", m.loss},
         {"lr", m.lr},
         {"grad_norm", m.grad_norm},
         {"tokens_per_s", m.tokens_per_s},
         {"peak_mem_bytes", m.peak_mem_bytes},
         {"elapsed_s", m.elapsed_s}});
}

void MetricsLog::log_eval(int64_t step, double eval_loss) {
  write({{"step", step}, {"eval_loss", eval_loss}, {"eval_perplexity", std::exp(eval_loss)}});
}

std::vector<json> read_metrics(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  QTUNE_CHECK(in, path, " not found (is this a `qtune run` output directory?)");
  std::vector<json> out;
  std::string text;
  while (std::getline(in, text)) {
    json line = json::parse(text, nullptr, /*allow_exceptions=*/false);
    // A torn line (the run was killed mid-write) is not a record.
    if (line.is_object() && line.contains("step") && line["step"].is_number_integer()) out.push_back(std::move(line));
  }
  return out;
}

}  // namespace qtune::recipes
