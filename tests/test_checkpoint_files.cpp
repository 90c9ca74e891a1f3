// Sharded and single-file Hugging Face weight files.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "engine/io/atomic_file.h"
#include "engine/io/checkpoint_files.h"
#include "tests/testing.h"

using namespace qtune;
using namespace qtune::io;
namespace fs = std::filesystem;

namespace {

fs::path scratch_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("qtune_test_ckpt_" + std::to_string(::getpid())) / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::vector<std::pair<std::string, Tensor>> some_tensors() {
  std::vector<std::pair<std::string, Tensor>> out;
  for (int i = 0; i < 5; ++i) {
    out.emplace_back("layer." + std::to_string(i) + ".weight", testing::random_f64({8, 4}, 7 + i).to(DType::f32));
  }
  out.emplace_back("norm", testing::random_f64({4}, 1).to(DType::bf16));
  return out;
}

void check_same(const CheckpointFiles& ckpt, const std::vector<std::pair<std::string, Tensor>>& tensors) {
  CHECK(ckpt.names().size() == tensors.size());
  for (const auto& [name, t] : tensors) {
    const Tensor back = ckpt.tensor(name);
    REQUIRE(back.shape() == t.shape());
    CHECK(std::memcmp(back.data_ptr(), t.data_ptr(), t.nbytes()) == 0);
  }
}

size_t count_files(const fs::path& dir) {
  return static_cast<size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator{}));
}

}  // namespace

TEST_CASE("one file: model.safetensors with format metadata and no index") {
  const fs::path dir = scratch_dir("single");
  const auto tensors = some_tensors();
  save_checkpoint_files(dir.string(), tensors);
  CHECK(fs::exists(dir / "model.safetensors"));
  CHECK_FALSE(fs::exists(dir / "model.safetensors.index.json"));
  const auto ckpt = CheckpointFiles::open(dir.string());
  check_same(ckpt, tensors);
  CHECK(ckpt.files().size() == 1);
  CHECK(ckpt.files()[0].metadata().at("format") == "pt");
  CHECK(ckpt.total_bytes() == 5 * 8 * 4 * 4 + 4 * 2);
}

TEST_CASE("shards: split by size, index lists every tensor, switching layouts removes stale files") {
  const fs::path dir = scratch_dir("sharded");
  const auto tensors = some_tensors();
  save_checkpoint_files(dir.string(), tensors,
                        {.max_shard_bytes = 300, .metadata = {}});  // 128 bytes per weight: 2 per shard
  CHECK(fs::exists(dir / "model.safetensors.index.json"));
  CHECK(fs::exists(dir / "model-00001-of-00003.safetensors"));
  CHECK(fs::exists(dir / "model-00003-of-00003.safetensors"));
  auto ckpt = CheckpointFiles::open(dir.string());
  check_same(ckpt, tensors);
  CHECK(ckpt.files().size() == 3);
  CHECK(ckpt.file_of("norm").path().find("model-00003-of-00003") != std::string::npos);

  // A tensor larger than the limit gets a shard of its own.
  save_checkpoint_files(dir.string(), tensors, {.max_shard_bytes = 10, .metadata = {}});
  CHECK(CheckpointFiles::open(dir.string()).files().size() == 6);
  CHECK(count_files(dir) == 7);

  save_checkpoint_files(dir.string(), tensors);
  CHECK(count_files(dir) == 1);
  check_same(CheckpointFiles::open(dir.string()), tensors);
}

TEST_CASE("index errors name the index file and the tensor") {
  const fs::path dir = scratch_dir("bad_index");
  const auto tensors = some_tensors();
  save_checkpoint_files(dir.string(), tensors, {.max_shard_bytes = 300, .metadata = {}});
  const std::string index = (dir / "model.safetensors.index.json").string();

  write_file_atomic(index, R"({"weight_map": {"layer.0.weight": "model-00001-of-00003.safetensors"}})");
  CHECK_THROWS_WITH_AS(CheckpointFiles::open(dir.string()),
                       doctest::Contains("holds \"layer.1.weight\", which the weight_map does not list"), Error);

  write_file_atomic(index, R"({"weight_map": {"ghost": "model-00001-of-00003.safetensors", )"
                           R"("layer.0.weight": "model-00001-of-00003.safetensors", )"
                           R"("layer.1.weight": "model-00001-of-00003.safetensors"}})");
  CHECK_THROWS_WITH_AS(CheckpointFiles::open(dir.string()), doctest::Contains("\"ghost\""), Error);

  write_file_atomic(index, R"({"weight_map": {"x": "../escape.safetensors"}})");
  CHECK_THROWS_WITH_AS(CheckpointFiles::open(dir.string()), doctest::Contains("not a file beside the index"), Error);

  write_file_atomic(index, R"({"weight_map": {"x": "missing.safetensors"}})");
  CHECK_THROWS_WITH_AS(CheckpointFiles::open(dir.string()), doctest::Contains("missing.safetensors: cannot open"),
                       Error);

  write_file_atomic(index, R"({"weight_map": )");
  CHECK_THROWS_WITH_AS(CheckpointFiles::open(dir.string()), doctest::Contains("index.json: not valid JSON"), Error);

  write_file_atomic(index, R"({"metadata": {}})");
  CHECK_THROWS_WITH_AS(CheckpointFiles::open(dir.string()),
                       doctest::Contains(("weight_map in " + index + " is missing").c_str()), Error);
  write_file_atomic(index, R"({"weight_map": {"x": 3}})");
  CHECK_THROWS_WITH_AS(CheckpointFiles::open(dir.string()),
                       doctest::Contains(("weight_map[\"x\"] in " + index + " must be a string, got number 3").c_str()),
                       Error);
}

TEST_CASE("a directory without weights, or no directory at all") {
  const fs::path dir = scratch_dir("empty");
  CHECK_THROWS_WITH_AS(CheckpointFiles::open(dir.string()), doctest::Contains("holds neither model.safetensors"),
                       Error);
  CHECK_THROWS_WITH_AS(CheckpointFiles::open((dir / "nope").string()), doctest::Contains("no such directory"), Error);
  save_checkpoint_files(dir.string(), some_tensors());
  CHECK_THROWS_WITH_AS(CheckpointFiles::open(dir.string()).tensor("nope"),
                       doctest::Contains("has no tensor named \"nope\""), Error);
}
