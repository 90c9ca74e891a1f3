// Reading a sharded checkpoint (dist.sharded_checkpoints) at another world size: a tensor cut in 2 pieces of 3
// comes back whole on one process and as pieces of 2 on 3 ranks, the optimizer state likewise; a missing or
// mis-shaped tensor is refused naming it. Writing is covered end to end by fsdp_reshard (4 -> 2 -> 1 ranks).
#include <doctest/doctest.h>

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "engine/check.h"
#include "engine/io/atomic_file.h"
#include "engine/io/safetensors.h"
#include "scratch_files.h"
#include "tools/recipes/checkpoint.h"
#include "tools/recipes/sharded_checkpoint.h"

using namespace qtune;
using testing::error_of;
namespace fs = std::filesystem;

namespace {

// A checkpoint of 2 ranks: "w" [5] as pieces of 3 (elements 0..4 and a padding 0), its "exp_avg" 10x that.
void write_two_ranks(const testing::ScratchDir& dir, const std::string& shape = "[5]") {
  fs::create_directories(dir.path / "shards");
  for (int r = 0; r < 2; ++r) {
    std::vector<float> w(3, 0.0f), m(3, 0.0f);
    for (int i = 0; i < 3; ++i)
      if (r * 3 + i < 5) w[size_t(i)] = float(r * 3 + i), m[size_t(i)] = 10.0f * float(r * 3 + i);
    io::save_safetensors(
        dir.file("shards/rank_" + std::to_string(r) + ".safetensors"),
        {{"w", Tensor::from_vector<float>(w, {3})}, {"state.0.exp_avg", Tensor::from_vector<float>(m, {3})}});
  }
  io::write_file_atomic(dir.file("shards/index.json"),
                        R"({"ranks": 2, "tensors": {"w": {"dtype": "f32", "shape": )" + shape +
                            R"(, "piece": 3}, "state.0.exp_avg": {"dtype": "f32", "shape": )" + shape +
                            R"(, "piece": 3}}})");
}

}  // namespace

TEST_CASE("a sharded checkpoint reads back at any world size") {
  testing::ScratchDir dir("sharded_checkpoint");
  CHECK_FALSE(recipes::has_sharded_state(dir.str()));
  write_two_ranks(dir);
  CHECK(recipes::has_sharded_state(dir.str()));

  // One process: the whole tensor.
  Tensor whole = Tensor::zeros({5});
  optim::OptimizerState state = recipes::read_sharded_state(dir.str(), {"w"}, {{5}}, {whole}, 0, {{"step", 4}});
  CHECK(whole.to_vector<float>() == std::vector<float>{0, 1, 2, 3, 4});
  CHECK(state.tensors.at("state.0.exp_avg").to_vector<float>() == std::vector<float>{0, 10, 20, 30, 40});
  CHECK(state.scalars.at("step") == 4);

  // 3 ranks holding pieces of 2: rank 1 has elements 2 and 3, rank 2 element 4 and padding.
  for (int rank = 1; rank < 3; ++rank) {
    Tensor piece = Tensor::zeros({2});
    state = recipes::read_sharded_state(dir.str(), {"w"}, {{5}}, {piece}, rank, {});
    const std::vector<float> expected = rank == 1 ? std::vector<float>{2, 3} : std::vector<float>{4, 0};
    CHECK(piece.to_vector<float>() == expected);
    CHECK(state.tensors.at("state.0.exp_avg").to_vector<float>() ==
          std::vector<float>{expected[0] * 10, expected[1] * 10});
  }

  Tensor other = Tensor::zeros({5});
  CHECK(error_of([&] { recipes::read_sharded_state(dir.str(), {"v"}, {{5}}, {other}, 0, {}); }).find("no tensor v") !=
        std::string::npos);
  Tensor wide = Tensor::zeros({6});
  CHECK(error_of([&] {
          recipes::read_sharded_state(dir.str(), {"w"}, {{6}}, {wide}, 0, {});
        }).find("w is f32 [5], this run's is f32 [6]") != std::string::npos);
}

TEST_CASE("pruning removes the ranks' files a killed sharded save left") {
  testing::ScratchDir out("sharded_checkpoint_prune");
  fs::create_directories(out.path / "checkpoints" / ".step_4.shards");
  testing::write_bytes(out.file("checkpoints/.step_4.shards/rank_0.safetensors"), "partial");
  fs::create_directories(out.path / "checkpoints" / ".step_6.tmp-123");  // another kind of leftover: not ours
  recipes::prune_checkpoints(out.str(), 1);
  CHECK_FALSE(fs::exists(out.path / "checkpoints" / ".step_4.shards"));
  CHECK(fs::exists(out.path / "checkpoints" / ".step_6.tmp-123"));
}

TEST_CASE("a damaged index is refused naming the file") {
  testing::ScratchDir dir("sharded_checkpoint_bad");
  write_two_ranks(dir, "[7]");  // 2 pieces of 3 cannot hold 7 elements
  Tensor whole = Tensor::zeros({7});
  CHECK(error_of([&] {
          recipes::read_sharded_state(dir.str(), {"w"}, {{7}}, {whole}, 0, {});
        }).find("2 pieces of 3 cannot hold [7]") != std::string::npos);
  io::write_file_atomic(dir.file("shards/index.json"), "{\"ranks\": 2}");
  CHECK(error_of([&] {
          recipes::read_sharded_state(dir.str(), {"w"}, {{7}}, {whole}, 0, {});
        }).find("index.json: not a sharded-state index") != std::string::npos);
}

TEST_CASE("a missing rank file is refused naming it") {
  testing::ScratchDir dir("sharded_checkpoint_missing");
  write_two_ranks(dir);
  fs::remove(dir.path / "shards" / "rank_1.safetensors");
  // Rank 0's elements are all in rank_0's file: it reads without the other.
  Tensor first = Tensor::zeros({3});
  recipes::read_sharded_state(dir.str(), {"w"}, {{5}}, {first}, 0, {});
  CHECK(first.to_vector<float>() == std::vector<float>{0, 1, 2});
  Tensor whole = Tensor::zeros({5});
  const std::string error = error_of([&] { recipes::read_sharded_state(dir.str(), {"w"}, {{5}}, {whole}, 0, {}); });
  INFO(error);
  CHECK(error.find("rank_1.safetensors") != std::string::npos);
}
