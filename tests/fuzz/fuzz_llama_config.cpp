// libFuzzer target for a model's config.json (models::parse_llama_config): any input parses into a config that
// validates and fits this machine, or raises qtune::Error.
#include <cstdlib>

#include "engine/check.h"
#include "fuzz_files.h"
#include "models/llama_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const qtune::models::LlamaConfig c = qtune::models::parse_llama_config(qtune::fuzz::as_text(data, size), "fuzz");
    if (c.num_parameters() <= 0 || c.resolved_head_dim() % 2 != 0) std::abort();
    if (!(qtune::models::parse_llama_config(qtune::models::llama_config_to_json(c), "again") == c)) std::abort();
  } catch (const qtune::Error&) {
  }
  return 0;
}
