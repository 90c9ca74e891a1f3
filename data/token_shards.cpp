#include "data/token_shards.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "data/token_shard_header.h"
#include "engine/check.h"
#include "engine/io/atomic_file.h"

namespace qtune::data {
namespace {

// Tokens are stored little-endian whatever the host; decoding byte by byte lets the compiler pick loads.
int32_t decode_token(const unsigned char* p, int token_bytes) {
  uint32_t v = static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8;
  if (token_bytes == 4) v |= static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
  return static_cast<int32_t>(v);
}

}  // namespace

void write_token_shard(const std::string& path, const std::vector<int32_t>& tokens, int64_t vocab_size) {
  QTUNE_CHECK(vocab_size >= 1 && static_cast<uint64_t>(vocab_size) <= kMaxTokenShardVocab, path, ": vocab_size ",
              vocab_size, " is outside [1, 2^31]");
  for (size_t i = 0; i < tokens.size(); ++i) {
    QTUNE_CHECK(tokens[i] >= 0 && tokens[i] < vocab_size, path, ": token ", i, " is ", tokens[i],
                ", outside the vocabulary [0, ", vocab_size, ")");
  }
  TokenShardHeader header;
  header.token_bytes = vocab_size <= 65536 ? 2 : 4;
  header.count = tokens.size();
  header.vocab_size = static_cast<uint64_t>(vocab_size);
  const auto width = static_cast<size_t>(header.token_bytes);

  io::AtomicFile out(path);
  out.write(encode_token_shard_header(header));
  // Encoded a block at a time so a large corpus never needs a second full-size copy.
  constexpr size_t kBlockTokens = size_t{1} << 20;
  std::vector<std::byte> block;
  for (size_t begin = 0; begin < tokens.size(); begin += kBlockTokens) {
    const size_t n = std::min(kBlockTokens, tokens.size() - begin);
    block.resize(n * width);
    for (size_t i = 0; i < n; ++i) {
      const auto v = static_cast<uint32_t>(tokens[begin + i]);
      for (size_t b = 0; b < width; ++b) block[i * width + b] = static_cast<std::byte>((v >> (8 * b)) & 0xFF);
    }
    out.write(block);
  }
  out.commit();
}

TokenShard TokenShard::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  QTUNE_CHECK(fd >= 0, path, ": cannot open token shard (", std::strerror(errno), ")");
  struct stat st {};
  const bool regular = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  const auto size = static_cast<size_t>(st.st_size);
  // An empty file cannot be mapped; the header check below rejects it for what it is.
  void* base = regular && size > 0 ? ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0) : nullptr;
  const int map_errno = errno;
  ::close(fd);
  QTUNE_CHECK(regular, path, ": not a regular file");
  QTUNE_CHECK(base != MAP_FAILED, path, ": cannot memory-map (", std::strerror(map_errno), ")");
  std::shared_ptr<const void> mapping;
  if (base != nullptr) mapping.reset(base, [size](const void* p) { ::munmap(const_cast<void*>(p), size); });

  const auto* bytes = static_cast<const std::byte*>(base);
  const TokenShardHeader header = parse_token_shard_header({bytes, std::min(size, kTokenShardHeaderBytes)}, size, path);
  TokenShard shard;
  shard.mapping_ = std::move(mapping);
  shard.data_ = reinterpret_cast<const unsigned char*>(bytes) + kTokenShardHeaderBytes;
  shard.path_ = path;
  shard.count_ = static_cast<int64_t>(header.count);
  shard.vocab_size_ = static_cast<int64_t>(header.vocab_size);
  shard.token_bytes_ = header.token_bytes;
  return shard;
}

int32_t TokenShard::operator[](int64_t i) const {
  QTUNE_CHECK(i >= 0 && i < count_, path_, ": token index ", i, " out of range [0, ", count_, ")");
  return decode_token(data_ + i * token_bytes_, token_bytes_);
}

void TokenShard::read(int64_t begin, int64_t n, int32_t* out) const {
  QTUNE_CHECK(begin >= 0 && n >= 0 && begin <= count_ && n <= count_ - begin, path_, ": reading tokens [", begin, ", ",
              begin + n, ") of ", count_);
  const unsigned char* p = data_ + begin * token_bytes_;
  for (int64_t i = 0; i < n; ++i) out[i] = decode_token(p + i * token_bytes_, token_bytes_);
}

void TokenShard::validate() const {
  for (int64_t i = 0; i < count_; ++i) {
    const int32_t t = decode_token(data_ + i * token_bytes_, token_bytes_);
    QTUNE_CHECK(t >= 0 && t < vocab_size_, path_, ": token ", i, " is ", static_cast<uint32_t>(t),
                ", outside the vocabulary [0, ", vocab_size_, ") the header declares");
  }
}

}  // namespace qtune::data
