// The streaming safetensors writer (engine/io/safetensors_writer.h): tensors written one at a time read back
// exactly; a tensor that does not match its declaration, or a file left short, fails naming it and leaves
// no file behind.
#include <doctest/doctest.h>

#include <filesystem>

#include "engine/io/safetensors.h"
#include "engine/io/safetensors_writer.h"
#include "tests/scratch_files.h"

using namespace qtune;

TEST_CASE("SafetensorsWriter streams tensors that read back bit for bit") {
  testing::ScratchDir dir("safetensors_writer");
  const std::string path = dir.file("w.safetensors");
  const Tensor a = Tensor::from_vector<float>({1.5f, -2.0f, 3.25f, 0.0f, 7.0f, -0.5f}, {2, 3}).to(DType::bf16);
  const Tensor b = Tensor::from_vector<int64_t>({4, 5, 6}, {3});
  {
    io::SafetensorsWriter out(path, {{"a", DType::bf16, {2, 3}}, {"b", DType::i64, {3}}}, {{"format", "pt"}});
    out.write(a);
    out.write(b);
    out.commit();
  }
  const io::SafetensorsFile file = io::SafetensorsFile::open(path);
  CHECK(file.metadata().at("format") == "pt");
  CHECK(file.tensor("a").to_vector<double>() == a.to_vector<double>());
  CHECK(file.tensor("b").to_vector<int64_t>() == b.to_vector<int64_t>());
}

TEST_CASE("SafetensorsWriter refuses mismatched and missing tensors, leaving no file") {
  testing::ScratchDir dir("safetensors_writer_bad");
  const std::string path = dir.file("w.safetensors");
  {
    io::SafetensorsWriter out(path, {{"x", DType::f32, {4}}, {"y", DType::f32, {2}}});
    CHECK_THROWS_WITH_AS(out.write(Tensor::zeros({5})),
                         doctest::Contains("tensor \"x\" was declared f32 [4], got f32 [5]"), Error);
    out.write(Tensor::zeros({4}));
    CHECK_THROWS_WITH_AS(out.commit(), doctest::Contains("only 1 of 2 tensors were written; the next is \"y\""), Error);
  }
  CHECK(!std::filesystem::exists(path));
  CHECK_THROWS_WITH_AS(io::SafetensorsWriter(path, {{"x", DType::f32, {1}}, {"x", DType::f32, {1}}}),
                       doctest::Contains("tensor name \"x\" is reserved or repeated"), Error);
}
