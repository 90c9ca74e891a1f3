// libFuzzer target for the token shard header check (built and run by tools/fuzz.sh). The input is a
// whole shard file: it must either be accepted with a payload of exactly count * token_bytes bytes or
// raise qtune::Error; a crash, a sanitizer report or an accepted header that disagrees with the file is a bug.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "data/token_shard_header.h"
#include "engine/check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qtune::data;
  const std::span<const std::byte> head(reinterpret_cast<const std::byte*>(data),
                                        std::min(size, kTokenShardHeaderBytes));
  try {
    const TokenShardHeader h = parse_token_shard_header(head, size, "fuzz");
    const bool consistent = (h.token_bytes == 2 || h.token_bytes == 4) && h.vocab_size >= 1 &&
                            h.count * static_cast<uint64_t>(h.token_bytes) + kTokenShardHeaderBytes == size;
    const auto reencoded = encode_token_shard_header(h);
    if (!consistent || !std::equal(reencoded.begin(), reencoded.end(), head.begin(), head.end())) std::abort();
  } catch (const qtune::Error&) {
  }
  return 0;
}
