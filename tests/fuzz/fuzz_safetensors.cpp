// libFuzzer target for the safetensors header validator (built and run by tools/fuzz.sh). Any input
// must either parse into entries that lie inside the data section or raise qtune::Error; a crash,
// a sanitizer report or an entry pointing outside the image is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "engine/check.h"
#include "engine/io/safetensors_header.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> image(reinterpret_cast<const std::byte*>(data), size);
  try {
    const auto header = qtune::io::parse_safetensors_header(image, "fuzz");
    for (const auto& e : header.entries) {
      if (e.begin > e.end || e.end > header.data_size || header.data_offset + header.data_size != size) std::abort();
    }
  } catch (const qtune::Error&) {
  }
  return 0;
}
