// GGUF container (docs/numerics.md §8): the streaming writer and the strict reader agree on every value type and
// tensor type, and the reader refuses each malformed image with an error naming the rule it breaks.
#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/io/gguf_file.h"
#include "engine/io/gguf_writer.h"
#include "engine/numerics/f16.h"
#include "engine/numerics/ggml_blocks.h"
#include "tests/scratch_files.h"
#include "tests/testing.h"

using namespace qtune;
using io::GgmlType;
using io::GgufType;
using io::GgufValue;
using testing::error_of;

namespace {

// A GGUF image built byte by byte, so a test can write what no valid writer would.
struct Image {
  std::string bytes;
  template <class T>
  Image& put(T v) {
    bytes.append(reinterpret_cast<const char*>(&v), sizeof v);
    return *this;
  }
  Image& str(const std::string& s) {
    put<uint64_t>(s.size());
    bytes += s;
    return *this;
  }
  Image& header(uint64_t tensors, uint64_t kvs, uint32_t version = 3) {
    bytes += "GGUF";
    return put<uint32_t>(version).put<uint64_t>(tensors).put<uint64_t>(kvs);
  }
  Image& kv_u32(const std::string& key, uint32_t v) { return str(key).put<uint32_t>(4).put<uint32_t>(v); }
  Image& tensor(const std::string& name, std::vector<uint64_t> dims, uint32_t type, uint64_t offset) {
    str(name).put<uint32_t>(static_cast<uint32_t>(dims.size()));
    for (const uint64_t d : dims) put<uint64_t>(d);
    return put<uint32_t>(type).put<uint64_t>(offset);
  }
  Image& pad(size_t alignment = 32) {
    while (bytes.size() % alignment) bytes += '\0';
    return *this;
  }
  Image& data(size_t n) {
    bytes.append(n, '\x01');
    return *this;
  }
};

std::string parse_error(const Image& image) {
  return error_of([&] {
    io::GgufFile::parse({reinterpret_cast<const std::byte*>(image.bytes.data()), image.bytes.size()}, "img.gguf");
  });
}

// One F32 tensor of 8 elements after one u32 key: a valid image the rejection cases start from.
Image valid_image() { return Image().header(1, 1).kv_u32("a.b", 7).tensor("t", {8}, 0, 0).pad().data(32); }

}  // namespace

TEST_CASE("GGUF: written values and tensors read back exactly") {
  testing::ScratchDir dir("gguf_roundtrip");
  const std::string path = dir.file("x.gguf");
  io::GgufMetadata metadata = {
      {"general.architecture", GgufValue::string("llama")},
      {"u8", GgufValue::scalar(GgufType::u8, 200)},
      {"i8", GgufValue::scalar(GgufType::i8, 0xfe)},
      {"u16", GgufValue::scalar(GgufType::u16, 65535)},
      {"i16", GgufValue::scalar(GgufType::i16, 0x8000)},
      {"u32", GgufValue::u32(4000000000u)},
      {"i32", GgufValue::i32(-7)},
      {"f32", GgufValue::f32(0.1f)},
      {"bool", GgufValue::boolean(true)},
      {"u64", GgufValue::u64(1ull << 40)},
      {"i64", GgufValue::scalar(GgufType::i64, static_cast<uint64_t>(int64_t{-5}))},
      {"f64", GgufValue::f64(1e-300)},
      {"strings", GgufValue::strings({"", "é", "a b"})},
      {"floats", GgufValue::f32s({1.5f, -2.0f})},
      {"ints", GgufValue::i32s({3, -4})},
      {"general.alignment", GgufValue::u32(64)},
  };
  const std::vector<float> f32 = {1.0f, -2.5f, 3.25f, 0.0f};
  std::vector<float> row(64);
  for (size_t i = 0; i < row.size(); ++i) row[i] = std::sin(0.37f * static_cast<float>(i)) * 3.0f;
  std::vector<numerics::BlockQ4_0> q4(2);
  numerics::quantize_row_q4_0_ref(row.data(), q4.data(), 64);
  std::vector<numerics::BlockQ8_0> q8(2);
  numerics::quantize_row_q8_0_ref(row.data(), q8.data(), 64);
  std::vector<uint16_t> f16(64);
  for (size_t i = 0; i < row.size(); ++i) f16[i] = numerics::f32_to_f16_bits(row[i]);
  {
    io::GgufWriter out(path, metadata,
                       {{"f32", GgmlType::f32, {2, 2}},
                        {"q4", GgmlType::q4_0, {1, 64}},
                        {"q8", GgmlType::q8_0, {2, 32}},
                        {"f16", GgmlType::f16, {64}}});
    out.write(std::as_bytes(std::span(f32)));
    out.write(std::as_bytes(std::span(q4)));
    out.write(std::as_bytes(std::span(q8)));
    out.write(std::as_bytes(std::span(f16)));
    out.commit();
  }
  const auto file = io::GgufFile::open(path);
  CHECK(file.header().version == 3);
  CHECK(file.header().alignment == 64);
  REQUIRE(file.metadata().size() == metadata.size());
  for (size_t i = 0; i < metadata.size(); ++i) {
    CAPTURE(metadata[i].first);
    CHECK(file.metadata()[i].first == metadata[i].first);
    CHECK(file.metadata()[i].second.describe(1000) == metadata[i].second.describe(1000));
    CHECK(file.metadata()[i].second.type() == metadata[i].second.type());
  }
  CHECK(file.at("i8").to_int("i8") == -2);
  CHECK(file.at("i16").to_int("i16") == -32768);
  CHECK(file.at("u32").to_int("u32") == 4000000000);
  CHECK(file.at("f32").to_double("f32") == doctest::Approx(0.1));
  CHECK(file.at("strings").to_strings("strings") == std::vector<std::string>{"", "é", "a b"});
  CHECK(file.at("ints").to_ints("ints") == std::vector<int32_t>{3, -4});
  CHECK(error_of([&] { file.at("u32").to_string("u32"); }).find("GGUF key u32 is a u32, not a string") !=
        std::string::npos);

  for (const auto& t : file.tensors()) CHECK(t.offset % 64 == 0);
  CHECK(file.tensor_info("f32").shape() == std::vector<int64_t>{2, 2});
  CHECK(file.tensor_info("f32").dims == std::vector<int64_t>{2, 2});
  CHECK(file.tensor_info("q4").dims == std::vector<int64_t>{64, 1});
  CHECK(file.dequantize(file.tensor_info("f32")).to_vector<float>() == f32);
  std::vector<float> want(64);
  numerics::dequantize_row_q4_0(q4.data(), want.data(), 64);
  CHECK(file.dequantize(file.tensor_info("q4")).to_vector<float>() == want);
  numerics::dequantize_row_q8_0(q8.data(), want.data(), 64);
  CHECK(file.dequantize(file.tensor_info("q8")).to_vector<float>() == want);
  for (size_t i = 0; i < row.size(); ++i) want[i] = numerics::f16_bits_to_f32(f16[i]);
  CHECK(file.dequantize(file.tensor_info("f16")).to_vector<float>() == want);
  CHECK(std::memcmp(file.bytes(file.tensor_info("q8")).data(), q8.data(), sizeof(numerics::BlockQ8_0) * 2) == 0);
}

TEST_CASE("GGUF writer: a tensor of the wrong size or a missing one leaves no file") {
  testing::ScratchDir dir("gguf_writer");
  const std::string path = dir.file("x.gguf");
  {
    io::GgufWriter out(path, {}, {{"a", GgmlType::f32, {4}}, {"b", GgmlType::f32, {4}}});
    const std::vector<float> three(3);
    CHECK(error_of([&] { out.write(std::as_bytes(std::span(three))); }).find("tensor a (F32) needs 16 bytes, got 12") !=
          std::string::npos);
    const std::vector<float> four(4);
    out.write(std::as_bytes(std::span(four)));
    CHECK(error_of([&] { out.commit(); }).find("1 of 2 tensors were not written (next: b)") != std::string::npos);
  }
  CHECK_FALSE(std::filesystem::exists(path));
  CHECK(error_of([&] {
          io::GgufWriter(path, {}, {{"q", GgmlType::q4_0, {2, 48}}});
        }).find("rows of 48 elements are not whole Q4_0 blocks of 32") != std::string::npos);
  CHECK(error_of([&] {
          io::GgufWriter(path, {}, {{"a", GgmlType::f32, {1}}, {"a", GgmlType::f32, {1}}});
        }).find("tensor name 'a' is empty, longer than 63 bytes or repeated") != std::string::npos);
  CHECK(error_of([&] {
          io::GgufWriter(path, {{"general.alignment", GgufValue::u32(24)}}, {});
        }).find("general.alignment must be a u32 power of two") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(path));
}

TEST_CASE("GGUF reader: the base image is valid") {
  CHECK(parse_error(valid_image()) == "");
  // Zero tensors, nothing after the header.
  CHECK(parse_error(Image().header(0, 0)) == "");
}

TEST_CASE("GGUF reader: every malformed image is refused, naming the rule") {
  struct Case {
    const char* what;
    Image image;
    const char* expect;
  };
  const std::string long_name(64, 'n');
  const std::vector<Case> cases = {
      {"empty file", Image(), "file ends inside the magic"},
      {"bad magic", Image().put<uint32_t>(0x46554746).put<uint32_t>(3), "not a GGUF file"},
      {"version 1", Image().header(0, 0, 1), "GGUF version 1 is not supported"},
      {"truncated counts", Image().put<uint32_t>(0x46554747).put<uint32_t>(3).put<uint32_t>(0),
       "file ends inside the tensor count"},
      {"kv count too large", Image().header(0, 1000), "1000 metadata pairs cannot fit"},
      {"tensor count too large", Image().header(1000, 0), "1000 tensor infos cannot fit"},
      {"key length past the end", Image().header(0, 1).put<uint64_t>(1000).data(20), "file ends inside a metadata key"},
      {"empty key", Image().header(0, 1).kv_u32("", 1), "an empty metadata key"},
      {"key not UTF-8", Image().header(0, 1).kv_u32("a\xff", 1), "metadata key is not valid UTF-8 (byte 1)"},
      {"duplicate key", Image().header(0, 2).kv_u32("k", 1).kv_u32("k", 2), "metadata key k appears twice"},
      {"unknown value type", Image().header(0, 1).str("k").put<uint32_t>(13).put<uint32_t>(0),
       "k: unknown value type 13"},
      {"bool not 0 or 1", Image().header(0, 1).str("k").put<uint32_t>(7).put<uint8_t>(2),
       "k: a bool holds 2, not 0 or 1"},
      {"nested array", Image().header(0, 1).str("k").put<uint32_t>(9).put<uint32_t>(9).put<uint64_t>(0),
       "k: an array of arrays"},
      {"array longer than the file",
       Image().header(0, 1).str("k").put<uint32_t>(9).put<uint32_t>(4).put<uint64_t>(1ull << 60),
       "an array of 1152921504606846976 u32 items does not fit"},
      {"truncated string value", Image().header(0, 1).str("k").put<uint32_t>(8).put<uint64_t>(5).data(2),
       "file ends inside the string value of k"},
      {"alignment not u32", Image().header(0, 1).str("general.alignment").put<uint32_t>(5).put<int32_t>(32),
       "general.alignment is not a u32"},
      {"alignment not a power of two", Image().header(0, 1).kv_u32("general.alignment", 48),
       "general.alignment 48 is not a power of two"},
      {"alignment zero", Image().header(0, 1).kv_u32("general.alignment", 0),
       "general.alignment 0 is not a power of two"},
      {"empty tensor name", Image().header(1, 0).tensor("", {8}, 0, 0).pad().data(32), "an empty tensor name"},
      {"long tensor name", Image().header(1, 0).tensor(long_name, {8}, 0, 0).pad().data(32), "is longer than 63 bytes"},
      {"no dims", Image().header(1, 0).tensor("t", {}, 0, 0).pad().data(32), "tensor t has 0 dimensions"},
      {"five dims", Image().header(1, 0).tensor("t", {1, 1, 1, 1, 1}, 0, 0).pad().data(32),
       "tensor t has 5 dimensions"},
      {"zero dim", Image().header(1, 0).tensor("t", {8, 0}, 0, 0).pad().data(32),
       "tensor t: dimension 1 is 0 (empty tensors are not allowed)"},
      {"element count overflow", Image().header(1, 0).tensor("t", {1ull << 32, 1ull << 32}, 0, 0).pad(),
       "the element count overflows"},
      {"unknown type", Image().header(1, 0).tensor("t", {8}, 99, 0).pad().data(32),
       "tensor t has ggml type type 99, which qtune does not read"},
      {"type without a layout", Image().header(1, 0).tensor("t", {256}, 23, 0).pad().data(256),
       "tensor t has ggml type IQ4_XS, which qtune does not read"},
      {"row not whole blocks", Image().header(1, 0).tensor("t", {48}, 2, 0).pad().data(64),
       "tensor t: its rows of 48 elements are not whole Q4_0 blocks of 32"},
      {"misaligned offset", Image().header(1, 0).tensor("t", {8}, 0, 4).pad().data(64),
       "tensor t: offset 4 is not a multiple of the alignment 32"},
      {"duplicate tensor", Image().header(2, 0).tensor("t", {8}, 0, 0).tensor("t", {8}, 0, 32).pad().data(64),
       "tensor t appears twice"},
      {"tensor past the end", Image().header(1, 0).tensor("t", {8}, 0, 0).pad().data(31),
       "tensor t (F32, 32 bytes at offset 0) runs past the end of the file (data section of 31 bytes)"},
      {"offset past the end", Image().header(1, 0).tensor("t", {8}, 0, 1ull << 62).pad().data(32),
       "tensor t (F32, 32 bytes at offset 4611686018427387904) runs past the end"},
      {"overlap", Image().header(2, 0).tensor("a", {16}, 0, 0).tensor("b", {8}, 0, 32).pad().data(96),
       "tensors a and b overlap (b starts at 32, a ends at 64)"},
      {"no data section", Image().header(1, 0).tensor("t", {8}, 0, 0), "the data section starts past the end"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.what);
    const std::string error = parse_error(c.image);
    CHECK_MESSAGE(error.find(c.expect) != std::string::npos, error);
    CHECK(error.find("img.gguf: ") != std::string::npos);
  }
}

TEST_CASE("GGUF reader: Q4_K and Q6_K dequantize as llama.cpp's gguf package does") {
  const auto golden = nlohmann::json::parse(testing::read_bytes(std::string(QTUNE_GOLDEN_DIR) + "/gguf/kquants.json"));
  for (const auto& [name, id, block_bytes] : {std::tuple{"q4_k", 12u, 144}, std::tuple{"q6_k", 14u, 210}}) {
    CAPTURE(name);
    const auto bytes = golden[name]["bytes"].get<std::vector<uint8_t>>();
    const auto values = golden[name]["values"].get<std::vector<double>>();
    REQUIRE(bytes.size() == 3u * block_bytes);
    Image image = Image().header(1, 0).tensor("t", {256, 3}, id, 0).pad();
    image.bytes.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    const auto file =
        io::GgufFile::parse({reinterpret_cast<const std::byte*>(image.bytes.data()), image.bytes.size()}, "k.gguf");
    const auto got = file.dequantize(file.tensor_info("t")).to_vector<float>();
    REQUIRE(got.size() == values.size());
    for (size_t i = 0; i < got.size(); ++i) {
      CAPTURE(i);
      CHECK(static_cast<double>(got[i]) == values[i]);
    }
  }
}

TEST_CASE("GGUF reader: an array longer than qtune reads is refused before anything is reserved for it") {
  const uint64_t count = io::kGgufMaxArrayItems + 1;
  Image image = Image().header(0, 1).str("k").put<uint32_t>(9).put<uint32_t>(0).put<uint64_t>(count);
  image.bytes.append(count, '\0');
  CHECK(parse_error(image).find("k: an array of 16777217 items is longer than qtune reads (16777216)") !=
        std::string::npos);
}

TEST_CASE("GGUF reader: a type qtune lists but cannot dequantize is named") {
  const Image image = Image().header(1, 0).tensor("t", {256}, 10, 0).pad().data(84);
  const auto file =
      io::GgufFile::parse({reinterpret_cast<const std::byte*>(image.bytes.data()), image.bytes.size()}, "k.gguf");
  CHECK(file.tensor_info("t").nbytes == 84);
  CHECK(error_of([&] {
          file.dequantize(file.tensor_info("t"));
        }).find("k.gguf: tensor t is Q2_K, which qtune cannot dequantize") != std::string::npos);
  CHECK(error_of([&] { file.tensor_info("missing"); }).find("k.gguf: no tensor named missing") != std::string::npos);
}

TEST_CASE("ggml type names and layouts") {
  CHECK(io::ggml_type_name(GgmlType::q4_k) == "Q4_K");
  CHECK(io::ggml_type_from_name("q8_0") == GgmlType::q8_0);
  CHECK(io::ggml_type_from_name("BF16") == GgmlType::bf16);
  CHECK_FALSE(io::ggml_type_from_name("iq4_xs").has_value());
  CHECK(io::ggml_row_bytes(GgmlType::q6_k, 512) == 420);
  CHECK(io::ggml_row_bytes(GgmlType::q4_0, 64) == 36);
}
