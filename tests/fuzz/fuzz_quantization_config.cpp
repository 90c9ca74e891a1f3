// libFuzzer target for the quantization_config of a quantized checkpoint's config.json
// (models::read_quantization_config): a scheme and group size that agree, or qtune::Error.
#include <cstdlib>

#include "engine/check.h"
#include "fuzz_files.h"
#include "models/quantization_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  qtune::fuzz::write_input(data, size, "config.json");
  try {
    const auto q = qtune::models::read_quantization_config(qtune::fuzz::scratch_dir().string());
    if (q && qtune::quant::weight_scheme_group_size(q->scheme) <= 0) std::abort();
  } catch (const qtune::Error&) {
  }
  return 0;
}
