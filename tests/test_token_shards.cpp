// Token shards: round trips in both widths, the writer's checks, and one test per rejection rule of the
// reader (data/token_shards.h), each naming the file.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

#include "data/token_shard_header.h"
#include "data/token_shards.h"
#include "tests/scratch_files.h"

using namespace qtune::data;
using namespace qtune::testing;

namespace {

// Header bytes with the given fields (magic and layout as the format says), then `payload` bytes.
std::string shard_bytes(uint32_t version, uint32_t token_bytes, uint64_t count, uint64_t vocab, size_t payload,
                        const char* magic = "QTTOKENS") {
  std::string bytes(kTokenShardHeaderBytes + payload, '\0');
  std::memcpy(bytes.data(), magic, 8);
  const auto put = [&](size_t offset, size_t width, uint64_t v) {
    for (size_t i = 0; i < width; ++i) bytes[offset + i] = static_cast<char>((v >> (8 * i)) & 0xFF);
  };
  put(8, 4, version);
  put(12, 4, token_bytes);
  put(16, 8, count);
  put(24, 8, vocab);
  return bytes;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("u16 shard round trip: header, size, tokens, read ranges") {
  ScratchDir dir("token_shards_u16");
  const std::vector<int32_t> tokens{1, 0, 511, 300, 2, 5};
  write_token_shard(dir.file("a.bin"), tokens, 512);
  CHECK(std::filesystem::file_size(dir.file("a.bin")) == 32 + 2 * tokens.size());
  const TokenShard shard = TokenShard::open(dir.file("a.bin"));
  CHECK(shard.size() == 6);
  CHECK(shard.vocab_size() == 512);
  CHECK(shard.token_bytes() == 2);
  CHECK(shard[2] == 511);
  std::vector<int32_t> out(3);
  shard.read(1, 3, out.data());
  CHECK(out == std::vector<int32_t>{0, 511, 300});
  shard.validate();
  CHECK(contains(error_of([&] { shard.read(4, 3, out.data()); }), "reading tokens [4, 7) of 6"));
  CHECK(contains(error_of([&] { (void)shard[6]; }), "token index 6 out of range"));
}

TEST_CASE("u32 above 65536 tokens of vocabulary; u16 up to exactly 65536") {
  ScratchDir dir("token_shards_u32");
  std::vector<int32_t> tokens{0, 65535, 65536, 99999};
  write_token_shard(dir.file("b.bin"), tokens, 100000);
  const TokenShard wide = TokenShard::open(dir.file("b.bin"));
  CHECK(wide.token_bytes() == 4);
  std::vector<int32_t> out(4);
  wide.read(0, 4, out.data());
  CHECK(out == tokens);
  tokens.pop_back();
  tokens.pop_back();
  write_token_shard(dir.file("c.bin"), tokens, 65536);
  CHECK(TokenShard::open(dir.file("c.bin")).token_bytes() == 2);
  CHECK(TokenShard::open(dir.file("c.bin"))[1] == 65535);
}

TEST_CASE("an empty shard is valid; copies share the mapping") {
  ScratchDir dir("token_shards_empty");
  write_token_shard(dir.file("e.bin"), {}, 32000);
  TokenShard copy = TokenShard::open(dir.file("e.bin"));
  {
    write_token_shard(dir.file("f.bin"), {7, 8}, 32000);
    const TokenShard original = TokenShard::open(dir.file("f.bin"));
    copy = original;
  }
  CHECK(copy[1] == 8);
  CHECK(TokenShard::open(dir.file("e.bin")).size() == 0);
}

TEST_CASE("the writer rejects tokens outside the vocabulary and leaves no file") {
  ScratchDir dir("token_shards_writer");
  const std::string path = dir.file("bad.bin");
  CHECK(contains(error_of([&] { write_token_shard(path, {1, 2, 512}, 512); }), "token 2 is 512, outside"));
  CHECK(contains(error_of([&] { write_token_shard(path, {-1}, 512); }), "token 0 is -1"));
  CHECK(contains(error_of([&] { write_token_shard(path, {0}, 0); }), "vocab_size 0 is outside"));
  CHECK(std::filesystem::is_empty(dir.path));
  // An unwritable destination names the path; nothing is left behind.
  CHECK(contains(error_of([&] { write_token_shard(dir.file("no/such/dir.bin"), {1}, 512); }), "no/such/dir.bin"));
  CHECK(std::filesystem::is_empty(dir.path));
}

TEST_CASE("rejected: a missing file, or one that is not a regular file") {
  ScratchDir dir("token_shards_missing");
  CHECK(contains(error_of([&] { TokenShard::open(dir.file("none.bin")); }), "none.bin: cannot open"));
  CHECK(contains(error_of([&] { TokenShard::open(dir.path.string()); }), "not a regular file"));
}

TEST_CASE("rejected: a file shorter than the header (empty included)") {
  ScratchDir dir("token_shards_short");
  write_bytes(dir.file("empty.bin"), "");
  CHECK(contains(error_of([&] { TokenShard::open(dir.file("empty.bin")); }),
                 "empty.bin: too short for a token shard (0 bytes"));
  write_bytes(dir.file("short.bin"), shard_bytes(1, 2, 0, 512, 0).substr(0, 31));
  CHECK(contains(error_of([&] { TokenShard::open(dir.file("short.bin")); }), "(31 bytes"));
}

TEST_CASE("rejected: a wrong magic") {
  ScratchDir dir("token_shards_magic");
  write_bytes(dir.file("m.bin"), shard_bytes(1, 2, 0, 512, 0, "QTTOKENZ"));
  CHECK(contains(error_of([&] { TokenShard::open(dir.file("m.bin")); }), "m.bin: not a token shard"));
}

TEST_CASE("rejected: an unknown version") {
  ScratchDir dir("token_shards_version");
  write_bytes(dir.file("v.bin"), shard_bytes(2, 2, 0, 512, 0));
  CHECK(contains(error_of([&] { TokenShard::open(dir.file("v.bin")); }), "v.bin: token shard version 2"));
}

TEST_CASE("rejected: token_bytes other than 2 or 4") {
  ScratchDir dir("token_shards_width");
  for (const uint32_t width : {0u, 1u, 3u, 8u}) {
    write_bytes(dir.file("w.bin"), shard_bytes(1, width, 1, 512, width));
    CHECK(contains(error_of([&] { TokenShard::open(dir.file("w.bin")); }),
                   "w.bin: token_bytes is " + std::to_string(width) + ", expected 2 or 4"));
  }
}

TEST_CASE("rejected: vocab_size 0 or above 2^31") {
  ScratchDir dir("token_shards_vocab");
  for (const uint64_t vocab : {uint64_t{0}, (uint64_t{1} << 31) + 1}) {
    write_bytes(dir.file("v.bin"), shard_bytes(1, 4, 0, vocab, 0));
    CHECK(contains(error_of([&] { TokenShard::open(dir.file("v.bin")); }), "vocab_size " + std::to_string(vocab)));
  }
}

TEST_CASE("rejected: a size other than 32 + count * token_bytes (truncated, padded, overflowing count)") {
  ScratchDir dir("token_shards_size");
  write_bytes(dir.file("t.bin"), shard_bytes(1, 2, 4, 512, 6));
  CHECK(contains(error_of([&] { TokenShard::open(dir.file("t.bin")); }),
                 "t.bin: the header says 4 tokens of 2 bytes, but the file holds 6 bytes"));
  write_bytes(dir.file("p.bin"), shard_bytes(1, 2, 4, 512, 9));
  CHECK(contains(error_of([&] { TokenShard::open(dir.file("p.bin")); }), "holds 9 bytes"));
  // count * 4 wraps to 0 in 64 bits: must not pass for an empty payload.
  write_bytes(dir.file("o.bin"), shard_bytes(1, 4, uint64_t{1} << 62, 512, 0));
  CHECK(contains(error_of([&] { TokenShard::open(dir.file("o.bin")); }), "o.bin: the header says"));
}

TEST_CASE("validate() rejects a token >= vocab_size, naming its index") {
  ScratchDir dir("token_shards_validate");
  std::string bytes = shard_bytes(1, 2, 3, 10, 6);
  bytes[32 + 2 * 2] = 10;  // token 2 = 10
  write_bytes(dir.file("x.bin"), bytes);
  const TokenShard shard = TokenShard::open(dir.file("x.bin"));
  CHECK(shard[1] == 0);
  CHECK(contains(error_of([&] { shard.validate(); }), "x.bin: token 2 is 10, outside the vocabulary [0, 10)"));
  // u32 values that do not fit int32 are reported as stored.
  bytes = shard_bytes(1, 4, 1, 10, 4);
  bytes[35] = '\x80';
  write_bytes(dir.file("y.bin"), bytes);
  CHECK(contains(error_of([&] { TokenShard::open(dir.file("y.bin")).validate(); }), "token 0 is 2147483648"));
}

TEST_CASE("the fuzz seeds parse as their names say") {
  const std::string seeds = std::string(QTUNE_GOLDEN_DIR) + "/../fuzz/seeds/token_shard/";
  CHECK(TokenShard::open(seeds + "empty").size() == 0);
  CHECK(TokenShard::open(seeds + "u16_three")[2] == 511);
  CHECK(TokenShard::open(seeds + "u32_two")[1] == 69999);
  CHECK(contains(error_of([&] { TokenShard::open(seeds + "truncated"); }), "says 4 tokens"));
}
