#include "data/token_shard_header.h"

#include <cstring>
#include <string_view>

#include "engine/check.h"

namespace qtune::data {
namespace {

constexpr std::string_view kMagic = "QTTOKENS";

uint64_t read_le(std::span<const std::byte> bytes, size_t offset, size_t width) {
  uint64_t value = 0;
  for (size_t i = 0; i < width; ++i) value |= static_cast<uint64_t>(bytes[offset + i]) << (8 * i);
  return value;
}

void write_le(std::array<std::byte, kTokenShardHeaderBytes>& bytes, size_t offset, size_t width, uint64_t value) {
  for (size_t i = 0; i < width; ++i) bytes[offset + i] = static_cast<std::byte>((value >> (8 * i)) & 0xFF);
}

}  // namespace

TokenShardHeader parse_token_shard_header(std::span<const std::byte> head, uint64_t file_size,
                                          const std::string& label) {
  QTUNE_CHECK(file_size >= kTokenShardHeaderBytes && head.size() >= kTokenShardHeaderBytes, label,
              ": too short for a token shard (", file_size, " bytes; the header alone is ", kTokenShardHeaderBytes,
              ")");
  QTUNE_CHECK(std::memcmp(head.data(), kMagic.data(), kMagic.size()) == 0, label,
              ": not a token shard (the file does not start with \"", kMagic,
              "\"; write one with `qtune data prepare`)");
  const uint64_t version = read_le(head, 8, 4);
  QTUNE_CHECK(version == kTokenShardVersion, label, ": token shard version ", version, ", this qtune reads version ",
              kTokenShardVersion);
  TokenShardHeader header;
  const uint64_t token_bytes = read_le(head, 12, 4);
  QTUNE_CHECK(token_bytes == 2 || token_bytes == 4, label, ": token_bytes is ", token_bytes, ", expected 2 or 4");
  header.token_bytes = static_cast<int>(token_bytes);
  header.count = read_le(head, 16, 8);
  header.vocab_size = read_le(head, 24, 8);
  QTUNE_CHECK(header.vocab_size >= 1 && header.vocab_size <= kMaxTokenShardVocab, label, ": vocab_size ",
              header.vocab_size, " is outside [1, 2^31]");
  // count * token_bytes can overflow: compare against the payload size divided instead.
  const uint64_t payload = file_size - kTokenShardHeaderBytes;
  QTUNE_CHECK(payload % token_bytes == 0 && payload / token_bytes == header.count, label, ": the header says ",
              header.count, " tokens of ", token_bytes, " bytes, but the file holds ", payload,
              " bytes after the header (truncated or padded?)");
  return header;
}

std::array<std::byte, kTokenShardHeaderBytes> encode_token_shard_header(const TokenShardHeader& header) {
  std::array<std::byte, kTokenShardHeaderBytes> bytes{};
  std::memcpy(bytes.data(), kMagic.data(), kMagic.size());
  write_le(bytes, 8, 4, kTokenShardVersion);
  write_le(bytes, 12, 4, static_cast<uint64_t>(header.token_bytes));
  write_le(bytes, 16, 8, header.count);
  write_le(bytes, 24, 8, header.vocab_size);
  return bytes;
}

}  // namespace qtune::data
