// The strict safetensors reader: one test per rejection rule of docs/numerics.md §8, and the writer.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/io/atomic_file.h"
#include "engine/io/safetensors.h"
#include "tests/testing.h"

using namespace qtune;
using namespace qtune::io;
namespace fs = std::filesystem;

namespace {

// An image: 8-byte little-endian length of `header`, the header, then `data_bytes` bytes of data.
std::vector<std::byte> image(const std::string& header, size_t data_bytes, uint64_t claimed_len = UINT64_MAX) {
  const uint64_t len = claimed_len == UINT64_MAX ? header.size() : claimed_len;
  std::vector<std::byte> out(8);
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<std::byte>((len >> (8 * i)) & 0xFF);
  for (char c : header) out.push_back(static_cast<std::byte>(c));
  for (size_t i = 0; i < data_bytes; ++i) out.push_back(static_cast<std::byte>(i * 7 + 1));
  return out;
}

// The error a parse raises ("" when it succeeds).
std::string rejection(const std::vector<std::byte>& bytes) {
  try {
    SafetensorsFile::parse(bytes, "test.safetensors");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

void check_rejected(const std::vector<std::byte>& bytes, const std::string& rule) {
  const std::string error = rejection(bytes);
  CHECK_MESSAGE(error.find("test.safetensors") != std::string::npos, "error does not name the file: ", error);
  CHECK_MESSAGE(error.find(rule) != std::string::npos, "expected '", rule, "' in: ", error);
}

const std::string kOneF32 = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";

fs::path scratch_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("qtune_test_safetensors_" + std::to_string(::getpid())) / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

}  // namespace

TEST_CASE("a well-formed image parses, with entries sorted by offset and metadata read") {
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"b":{"dtype":"BF16","shape":[3],"data_offsets":[8,14]},)"
      R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"e":{"dtype":"I16","shape":[0,4],"data_offsets":[14,14]}})";
  const auto bytes = image(header, 14);
  const auto file = SafetensorsFile::parse(bytes, "ok");
  REQUIRE(file.entries().size() == 3);
  CHECK(file.entries()[0].name == "a");
  CHECK(file.entries()[1].name == "b");
  CHECK(file.entries()[2].shape == Shape{0, 4});
  CHECK(file.metadata().at("format") == "pt");
  CHECK(file.at("b").dtype == StDType::BF16);
  CHECK(file.find("zz") == nullptr);
  CHECK(file.bytes(file.at("b")).data() == bytes.data() + 8 + header.size() + 8);
  CHECK_THROWS_AS(file.at("zz"), Error);
}

TEST_CASE("rule: a file shorter than the 8-byte length prefix") {
  check_rejected({}, "too short");
  check_rejected(std::vector<std::byte>(7), "too short");
}

TEST_CASE("rule: header length over 100,000,000") {
  check_rejected(image(kOneF32, 8, 100'000'001), "exceeds the limit");
}

TEST_CASE("rule: header length past the end of the file") {
  check_rejected(image(kOneF32, 8, kOneF32.size() + 9), "runs past the end of the file");
  check_rejected(image(kOneF32, 0, UINT64_MAX - 1), "exceeds the limit");
}

TEST_CASE("rule: header that is not UTF-8") {
  check_rejected(image("{\"\xff\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1), "not valid UTF-8");
  check_rejected(image("{\"\xc0\xaf\":{}}", 0), "not valid UTF-8");      // overlong '/'
  check_rejected(image("{\"\xed\xa0\x80\":{}}", 0), "not valid UTF-8");  // a surrogate
  check_rejected(image("{\"\xe2\x82\":1}", 0), "not valid UTF-8");       // truncated sequence
  CHECK(rejection(image("{\"\xc3\xa9\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1)).empty());
}

TEST_CASE("rule: header that is not JSON, or not a JSON object") {
  check_rejected(image(R"({"a":{"dtype":"F32",)", 0), "not valid JSON");
  check_rejected(image(R"([1, 2])", 0), "must be a JSON object");
}

TEST_CASE("rule: __metadata__ values must be strings") {
  check_rejected(image(R"({"__metadata__":{"format":1}})", 0), "__metadata__ value of \"format\" must be a string");
  check_rejected(image(R"({"__metadata__":["pt"]})", 0), "__metadata__ must be an object");
}

TEST_CASE("rule: duplicate keys") {
  check_rejected(image(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                       R"("a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                       2),
                 "repeats the key \"a\"");
  check_rejected(image(R"({"a":{"dtype":"U8","dtype":"I8","shape":[1],"data_offsets":[0,1]}})", 1),
                 "repeats the key \"dtype\"");
}

TEST_CASE("rule: unknown dtype") {
  check_rejected(image(R"({"a":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}})", 16), "unknown dtype \"F128\"");
}

TEST_CASE("rule: malformed entries") {
  check_rejected(image(R"({"a":{"dtype":"F32","shape":[2]}})", 0), "must have dtype, shape and data_offsets");
  check_rejected(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", 8), "unknown field \"x\"");
  check_rejected(image(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8), "non-negative integer");
  check_rejected(image(R"({"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", 8), "non-negative integer");
  check_rejected(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8), "must be [begin, end]");
  check_rejected(image(R"({"a":[1]})", 0), "must be an object");
}

TEST_CASE("rule: shape byte size differs from end - begin") {
  check_rejected(image(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), "needs 12 bytes");
}

TEST_CASE("rule: shape byte size overflows") {
  check_rejected(image(R"({"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8),
                 "overflows 64 bits");
}

TEST_CASE("rule: begin after end") {
  check_rejected(image(R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}})", 4), "is after end");
}

TEST_CASE("rule: offsets must start at 0 and tile the data without gaps or overlap") {
  check_rejected(image(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})", 4), "(a gap)");
  check_rejected(image(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                       R"("b":{"dtype":"U8","shape":[2],"data_offsets":[3,5]}})",
                       5),
                 "(a gap)");
  check_rejected(image(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                       R"("b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})",
                       4),
                 "(an overlap)");
}

TEST_CASE("rule: data must end exactly at the end of the file") {
  check_rejected(image(kOneF32, 9), "data section holds 9 bytes");
  check_rejected(image(kOneF32, 4), "data section holds 4 bytes");
  check_rejected(image("{}", 1), "data section holds 1 bytes");
  CHECK(rejection(image("{}", 0)).empty());
}

TEST_CASE("save then open: every dtype round-trips bit for bit, tensors view the mapping") {
  const fs::path dir = scratch_dir("roundtrip");
  const std::string path = (dir / "t.safetensors").string();
  std::vector<std::pair<std::string, Tensor>> tensors;
  const DType dtypes[] = {DType::f64, DType::f32, DType::bf16, DType::f16, DType::f8_e4m3, DType::f8_e5m2,
                          DType::i64, DType::i32, DType::i8,   DType::u8,  DType::boolean};
  int k = 0;
  for (DType dt : dtypes) {
    const Tensor t = testing::random_f64({3, 5}, 10 + k, -3, 3).to(dt);
    tensors.emplace_back(std::string("t.") + std::string(dtype_name(dt)), t);
    ++k;
  }
  // A strided view is written by value.
  tensors.emplace_back("transposed", testing::random_f64({4, 3}, 99).to(DType::f32).transpose(0, 1));
  save_safetensors(path, tensors, {{"format", "pt"}, {"note", "héllo"}});
  CHECK(std::distance(fs::directory_iterator(dir), fs::directory_iterator{}) == 1);  // no temporary left

  const auto file = SafetensorsFile::open(path);
  CHECK(file.metadata().at("note") == "héllo");
  for (const auto& [name, t] : tensors) {
    const Tensor back = file.tensor(name);
    REQUIRE(back.dtype() == t.dtype());
    REQUIRE(back.shape() == t.shape());
    const Tensor expect = t.contiguous();
    CHECK(std::memcmp(back.data_ptr(), expect.data_ptr(), expect.nbytes()) == 0);
  }
  // Header padding keeps the data section 8-byte aligned, so wide dtypes are zero-copy views.
  const Tensor f64 = file.tensor("t.f64");
  CHECK(f64.data_ptr() == static_cast<const void*>(file.bytes(file.at("t.f64")).data()));
  // A tensor outlives the file object, and writing into it leaves the file untouched.
  Tensor kept;
  { kept = SafetensorsFile::open(path).tensor("t.f32"); }
  const std::vector<float> before = kept.to_vector<float>();
  kept.fill_(0.0);
  CHECK(SafetensorsFile::open(path).tensor("t.f32").to_vector<float>() == before);
  // Dropping a consumed byte range of the mapping (a chunked loader) loses nothing: the file reads back the same.
  REQUIRE(tensors[0].first == "t.f64");
  const TensorEntry& e = file.at("t.f64");
  file.release(e, 0, e.nbytes() / 2);
  CHECK(std::memcmp(file.tensor("t.f64").data_ptr(), tensors[0].second.contiguous().data_ptr(), e.nbytes()) == 0);
  CHECK_THROWS_WITH_AS(file.release(e, 8, e.nbytes() + 1), doctest::Contains("lie outside tensor \"t.f64\""), Error);
}

TEST_CASE("a file named on disk: errors name the path; I16 is listed but not loadable") {
  const fs::path dir = scratch_dir("errors");
  CHECK_THROWS_WITH_AS(SafetensorsFile::open((dir / "missing.safetensors").string()),
                       doctest::Contains("missing.safetensors: cannot open"), Error);
  const std::string empty = (dir / "empty.safetensors").string();
  std::ofstream(empty).close();
  CHECK_THROWS_WITH_AS(SafetensorsFile::open(empty), doctest::Contains("empty.safetensors: file is 0 bytes"), Error);
  CHECK_THROWS_WITH_AS(SafetensorsFile::open(dir.string()), doctest::Contains("not a regular file"), Error);

  const std::string i16 = (dir / "i16.safetensors").string();
  const auto bytes = image(R"({"x":{"dtype":"I16","shape":[2],"data_offsets":[0,4]}})", 4);
  std::ofstream(i16, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  const auto file = SafetensorsFile::open(i16);
  CHECK(file.at("x").dtype == StDType::I16);
  CHECK_THROWS_WITH_AS(file.tensor("x"), doctest::Contains("cannot compute with"), Error);
}

TEST_CASE("atomic writes: an abandoned writer leaves the old file and no temporary behind") {
  const fs::path dir = scratch_dir("atomic");
  const std::string path = (dir / "f.txt").string();
  write_file_atomic(path, "old");
  {
    AtomicFile out(path);
    out.write(std::string_view("new, but never committed"));
  }
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(text == "old");
  CHECK(std::distance(fs::directory_iterator(dir), fs::directory_iterator{}) == 1);
  CHECK_THROWS_WITH_AS(write_file_atomic((dir / "no_such_dir" / "f").string(), "x"), doctest::Contains("cannot create"),
                       Error);
}
