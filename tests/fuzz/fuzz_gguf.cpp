// libFuzzer target for the GGUF header validator (built and run by tools/fuzz.sh). Any input must either parse
// into tensors that lie inside the data section without overlapping, or raise qtune::Error; a crash, a sanitizer
// report or a tensor pointing outside the image is a bug.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "engine/check.h"
#include "engine/io/gguf_header.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> image(reinterpret_cast<const std::byte*>(data), size);
  try {
    const auto header = qtune::io::parse_gguf_header(image, "fuzz");
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    for (const auto& t : header.tensors) {
      if (header.data_offset > size || t.offset > size - header.data_offset ||
          t.nbytes > size - header.data_offset - t.offset || t.offset % header.alignment != 0)
        std::abort();
      ranges.emplace_back(t.offset, t.offset + t.nbytes);
    }
    std::sort(ranges.begin(), ranges.end());
    for (size_t i = 1; i < ranges.size(); ++i)
      if (ranges[i].first < ranges[i - 1].second) std::abort();
    for (const auto& [key, value] : header.metadata) (void)value.describe();
  } catch (const qtune::Error&) {
  }
  return 0;
}
