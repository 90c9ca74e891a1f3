// libFuzzer target for run configs with key=value overrides (recipes::parse_run_config): the input is the
// JSON text, then after a line "--" one override per line. A config that parses writes JSON that parses back
// to the same text, or the reader raises qtune::Error.
#include <cstdlib>

#include "engine/check.h"
#include "fuzz_files.h"
#include "tools/recipes/run_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input = qtune::fuzz::as_text(data, size);
  const size_t split = input.find("\n--\n");
  const std::string text = input.substr(0, split);
  std::vector<std::string> overrides;
  if (split != std::string::npos) {
    size_t at = split + 4;
    while (at <= input.size()) {
      const size_t end = std::min(input.find('\n', at), input.size());
      overrides.push_back(input.substr(at, end - at));
      at = end + 1;
    }
  }
  try {
    const auto config = qtune::recipes::parse_run_config(text, "fuzz", overrides);
    const std::string json = qtune::recipes::run_config_to_json(config);
    if (qtune::recipes::run_config_to_json(qtune::recipes::parse_run_config(json, "again")) != json) std::abort();
  } catch (const qtune::Error&) {
  }
  return 0;
}
