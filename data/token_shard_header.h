#pragma once
// The 32-byte header of a token shard (layout in data/token_shards.h), checked against the file size:
// the part of the shard reader that sees untrusted bytes, kept free of the rest of qtune so that the
// fuzz target (tests/fuzz/fuzz_token_shard.cpp) builds it alone.
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace qtune::data {

inline constexpr size_t kTokenShardHeaderBytes = 32;
inline constexpr uint32_t kTokenShardVersion = 1;
// Tokens are read into int32: a larger vocabulary could not be represented.
inline constexpr uint64_t kMaxTokenShardVocab = uint64_t{1} << 31;

struct TokenShardHeader {
  int token_bytes = 0;  // 2 (u16) or 4 (u32)
  uint64_t count = 0;
  uint64_t vocab_size = 0;
};

// `head`: the first min(32, file_size) bytes of a file of `file_size` bytes. Throws qtune::Error
// "<label>: <rule broken>" for a short file, a wrong magic or version, token_bytes other than 2 / 4,
// a vocab_size of 0 or above 2^31, and a file size other than 32 + count * token_bytes.
TokenShardHeader parse_token_shard_header(std::span<const std::byte> head, uint64_t file_size,
                                          const std::string& label);

std::array<std::byte, kTokenShardHeaderBytes> encode_token_shard_header(const TokenShardHeader& header);

}  // namespace qtune::data
