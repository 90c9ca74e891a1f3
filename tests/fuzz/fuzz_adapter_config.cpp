// libFuzzer target for a PEFT adapter_config.json (models::load_adapter_config): a LoRA config with a positive
// rank and a dropout in [0, 1), or qtune::Error.
#include <cstdlib>

#include "engine/check.h"
#include "fuzz_files.h"
#include "models/peft_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  qtune::fuzz::write_input(data, size, "adapter_config.json");
  try {
    const qtune::models::LoraConfig c = qtune::models::load_adapter_config(qtune::fuzz::scratch_dir().string());
    if (c.rank <= 0 || !(c.dropout >= 0 && c.dropout < 1) || c.targets.empty()) std::abort();
  } catch (const qtune::Error&) {
  }
  return 0;
}
