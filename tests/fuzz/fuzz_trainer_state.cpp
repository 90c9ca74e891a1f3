// libFuzzer target for a checkpoint's trainer_state.json (recipes::parse_trainer_state): a state whose
// counters are non-negative and which writes back to the same state, or qtune::Error.
#include <cstdlib>

#include "engine/check.h"
#include "fuzz_files.h"
#include "tools/recipes/trainer_state.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto s = qtune::recipes::parse_trainer_state(qtune::fuzz::as_text(data, size), "fuzz");
    if (s.step < 0 || s.total_steps < 0 || s.data.epoch < 0 || s.data.sequence < 0) std::abort();
    const auto again = qtune::recipes::parse_trainer_state(qtune::recipes::trainer_state_to_json(s), "again");
    if (again.step != s.step || again.rng_offset != s.rng_offset || again.config_json != s.config_json) std::abort();
  } catch (const qtune::Error&) {
  }
  return 0;
}
