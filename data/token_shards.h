#pragma once
// Token shards: a tokenized corpus on disk, memory-mapped for training.
// Layout (little-endian): 32-byte header, then `count` tokens of `token_bytes` (2 = u16, 4 = u32):
//   bytes 0-7   magic "QTTOKENS"
//   bytes 8-11  u32 version (1)
//   bytes 12-15 u32 token_bytes (2 or 4)
//   bytes 16-23 u64 count
//   bytes 24-31 u64 vocab_size (every token is < vocab_size)
// A reader rejects, naming the file: a short file, a wrong magic or version, token_bytes other than 2/4,
// a size that differs from 32 + count * token_bytes, and (on validate()) a token >= vocab_size.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace qtune::data {

// Writes `tokens` atomically (temporary file + rename). u16 when vocab_size <= 65536, else u32.
// A token outside [0, vocab_size) is an Error naming its index.
void write_token_shard(const std::string& path, const std::vector<int32_t>& tokens, int64_t vocab_size);

class TokenShard {
 public:
  static TokenShard open(const std::string& path);  // maps the file; checks the header and size
  int64_t size() const { return count_; }
  int64_t vocab_size() const { return vocab_size_; }
  int token_bytes() const { return token_bytes_; }
  const std::string& path() const { return path_; }
  int32_t operator[](int64_t i) const;
  // Copies tokens [begin, begin + n) into out (n values).
  void read(int64_t begin, int64_t n, int32_t* out) const;
  // Scans every token against vocab_size; an Error names the file and the first offending index.
  void validate() const;

 private:
  std::shared_ptr<const void> mapping_;  // keeps the mmap alive; copies share it
  const unsigned char* data_ = nullptr;  // first token
  std::string path_;
  int64_t count_ = 0, vocab_size_ = 0;
  int token_bytes_ = 0;
};

}  // namespace qtune::data
