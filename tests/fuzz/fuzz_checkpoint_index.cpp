// libFuzzer target for model.safetensors.index.json (io::read_checkpoint_index): every listed shard is a plain
// file name beside the index, or the reader raises qtune::Error.
#include <cstdlib>

#include "engine/check.h"
#include "engine/io/checkpoint_index.h"
#include "fuzz_files.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = qtune::fuzz::write_input(data, size, "model.safetensors.index.json");
  try {
    for (const auto& [tensor, file] : qtune::io::read_checkpoint_index(path)) {
      if (file.empty() || file.find('/') != std::string::npos || file == "." || file == "..") std::abort();
    }
  } catch (const qtune::Error&) {
  }
  return 0;
}
