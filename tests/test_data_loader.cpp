// DataLoader: windows of token streams and shards, packing and padding of examples, shuffles that are
// permutations fixed by (seed, epoch), dropped partial batches, and positions that resume a run exactly.
#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/data_loader.h"
#include "tests/scratch_files.h"

using namespace qtune;
using namespace qtune::data;
using namespace qtune::testing;

namespace {

std::vector<int32_t> iota_stream(int32_t n, int32_t first = 0) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), first);
  return v;
}

// Row b of a [B, T] i64 tensor.
std::vector<int64_t> row(const Tensor& t, int64_t b) {
  const auto all = t.to_vector<int64_t>();
  const auto T = t.shape()[1];
  return {all.begin() + b * T, all.begin() + (b + 1) * T};
}

// First tokens of each sequence of the next `batches` batches.
std::vector<int64_t> first_tokens(DataLoader& loader, int batches) {
  std::vector<int64_t> firsts;
  for (int i = 0; i < batches; ++i) {
    const Batch batch = loader.next();
    for (int64_t b = 0; b < loader.batch_size(); ++b) firsts.push_back(row(batch.tokens, b)[0]);
  }
  return firsts;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("a stream is cut into windows every seq_len tokens; targets are the tokens shifted by one") {
  // 23 tokens, seq_len 4: windows start at 0, 4, ..., 16 ((23 - 1) / 4 = 5 windows); token 21, 22 unused
  // beyond the last window's target 20.
  DataLoader loader = DataLoader::from_tokens(iota_stream(23), 4, 1, 7);
  CHECK(loader.sequences_per_epoch() == 5);
  CHECK(loader.batches_per_epoch() == 5);
  std::set<int64_t> starts;
  for (int i = 0; i < 5; ++i) {
    const Batch batch = loader.next();
    CHECK(batch.tokens.shape() == Shape{1, 4});
    CHECK(batch.tokens.dtype() == DType::i64);
    CHECK(batch.num_targets == 4);
    const auto tokens = row(batch.tokens, 0), targets = row(batch.targets, 0);
    for (int64_t t = 0; t < 4; ++t) {
      CHECK(tokens[t] == tokens[0] + t);
      CHECK(targets[t] == tokens[0] + t + 1);
    }
    starts.insert(tokens[0]);
  }
  CHECK(starts == std::set<int64_t>{0, 4, 8, 12, 16});
  CHECK(loader.position() == DataPosition{0, 5});
}

TEST_CASE("every epoch is a permutation; the order depends on seed and epoch only") {
  DataLoader a = DataLoader::from_tokens(iota_stream(401), 4, 5, 42);  // 100 windows, 20 batches
  DataLoader b = DataLoader::from_tokens(iota_stream(401), 4, 5, 42);
  DataLoader c = DataLoader::from_tokens(iota_stream(401), 4, 5, 43);
  const auto epoch0 = first_tokens(a, 20), epoch1 = first_tokens(a, 20);
  std::vector<int64_t> all(100);
  for (int64_t i = 0; i < 100; ++i) all[static_cast<size_t>(i)] = 4 * i;
  for (auto epoch : {epoch0, epoch1}) {
    std::sort(epoch.begin(), epoch.end());
    CHECK(epoch == all);
  }
  CHECK(epoch0 != epoch1);
  CHECK(first_tokens(b, 20) == epoch0);
  CHECK(first_tokens(c, 20) != epoch0);
  CHECK(a.position() == DataPosition{1, 100});
}

TEST_CASE("the shuffle equals its definition computed in Python (tools/goldens/gen_data_order.py)") {
  // Philox4x32-10 and integer arithmetic only: the same order on every platform and standard library, so a
  // checkpoint's data position means the same data everywhere.
  std::ifstream in(std::string(QTUNE_GOLDEN_DIR) + "/data/shuffle_order.json");
  REQUIRE(in.good());
  for (const auto& c : nlohmann::json::parse(in)) {
    const auto n = c.at("n").get<int32_t>();
    const auto epoch = c.at("epoch").get<int64_t>();
    DataLoader loader = DataLoader::from_tokens(iota_stream(4 * n + 1), 4, n, c.at("seed").get<uint64_t>());
    loader.set_position({epoch, 0});
    std::vector<int64_t> windows;
    for (const int64_t first : first_tokens(loader, 1)) windows.push_back(first / 4);
    CHECK(windows == c.at("order").get<std::vector<int64_t>>());
  }
}

TEST_CASE("a partial batch is dropped; the next epoch starts afresh") {
  DataLoader loader = DataLoader::from_tokens(iota_stream(29), 4, 2, 1);  // 7 windows, 3 batches
  CHECK(loader.batches_per_epoch() == 3);
  const auto epoch0 = first_tokens(loader, 3);
  CHECK(std::set<int64_t>(epoch0.begin(), epoch0.end()).size() == 6);
  CHECK(loader.position() == DataPosition{0, 6});
  loader.next();
  CHECK(loader.position() == DataPosition{1, 2});
}

TEST_CASE("a loader restored to a position yields exactly the batches an uninterrupted one does") {
  DataLoader reference = DataLoader::from_tokens(iota_stream(301), 5, 4, 99);  // 60 windows, 15 batches
  std::vector<DataPosition> positions;
  std::vector<std::vector<int64_t>> batches;
  for (int i = 0; i < 40; ++i) {  // through epochs 0, 1 and into 2
    positions.push_back(reference.position());
    const Batch batch = reference.next();
    batches.push_back(batch.tokens.to_vector<int64_t>());
    CHECK(batch.targets.to_vector<int64_t>()[0] == batches.back()[0] + 1);
  }
  for (const int from : {0, 7, 15, 16, 29, 30}) {
    CAPTURE(from);
    DataLoader resumed = DataLoader::from_tokens(iota_stream(301), 5, 4, 99);
    resumed.set_position(positions[static_cast<size_t>(from)]);
    for (int i = from; i < 40; ++i)
      CHECK(resumed.next().tokens.to_vector<int64_t>() == batches[static_cast<size_t>(i)]);
    CHECK(resumed.position() == reference.position());
  }
  // The end-of-epoch position {e, 60} resumes into epoch e + 1 like the original.
  CHECK(positions[15] == DataPosition{0, 60});
}

TEST_CASE("positions out of range and data too short for one batch are Errors") {
  DataLoader loader = DataLoader::from_tokens(iota_stream(41), 4, 2, 0);  // 10 windows
  CHECK(contains(error_of([&] { loader.set_position({0, 11}); }), "position (epoch 0, sequence 11) is out of range"));
  CHECK(contains(error_of([&] { loader.set_position({-1, 0}); }), "out of range"));
  loader.set_position({3, 10});
  CHECK(loader.next().tokens.shape() == Shape{2, 4});
  CHECK(loader.position() == DataPosition{4, 2});
  CHECK(contains(error_of([] { DataLoader::from_tokens(iota_stream(4), 4, 1, 0); }),
                 "a token stream of 4 tokens is shorter than one window of seq_len + 1 = 5 tokens"));
  CHECK(contains(error_of([] { DataLoader::from_tokens(iota_stream(13), 4, 4, 0); }),
                 "make 3 sequences of seq_len 4, fewer than batch_size 4"));
  CHECK(contains(error_of([] { DataLoader::from_tokens(iota_stream(13), 0, 4, 0); }), "must be positive"));
}

TEST_CASE("shards: windows per shard, never across two; too-short shards contribute none; tokens validated") {
  ScratchDir dir("data_loader_shards");
  write_token_shard(dir.file("a.bin"), iota_stream(9, 100), 512);  // 2 windows of 4
  write_token_shard(dir.file("b.bin"), iota_stream(3, 300), 512);  // none
  write_token_shard(dir.file("c.bin"), iota_stream(6, 200), 512);  // 1 window
  DataLoader loader = DataLoader::from_shards(
      {TokenShard::open(dir.file("a.bin")), TokenShard::open(dir.file("b.bin")), TokenShard::open(dir.file("c.bin"))},
      4, 1, 5);
  CHECK(loader.sequences_per_epoch() == 3);
  std::set<std::vector<int64_t>> targets;
  for (int i = 0; i < 3; ++i) targets.insert(row(loader.next().targets, 0));
  CHECK(targets == std::set<std::vector<int64_t>>{{101, 102, 103, 104}, {105, 106, 107, 108}, {201, 202, 203, 204}});

  CHECK(contains(error_of([&] { DataLoader::from_shards({TokenShard::open(dir.file("b.bin"))}, 4, 1, 0); }),
                 "b.bin (3 tokens) make 0 sequences"));
  write_bytes(dir.file("bad.bin"), read_bytes(dir.file("b.bin")));
  std::string bytes = read_bytes(dir.file("b.bin"));
  bytes[32] = bytes[33] = '\xFF';  // token 0 = 65535 >= 512
  write_bytes(dir.file("bad.bin"), bytes);
  CHECK(contains(error_of([&] { DataLoader::from_shards({TokenShard::open(dir.file("bad.bin"))}, 2, 1, 0); }),
                 "bad.bin: token 0 is 65535"));
  CHECK(contains(error_of([] { DataLoader::from_shards({}, 4, 1, 0); }), "no token shards"));
}

namespace {

// Example e: tokens 10 * e + 1, 10 * e + 2, ...; its labels are its next tokens, the last one ignored.
Example example(int e, int length) {
  Example ex;
  for (int i = 0; i < length; ++i) {
    ex.tokens.push_back(10 * e + i + 1);
    ex.labels.push_back(i + 1 < length ? 10 * e + i + 2 : kIgnoreIndex);
  }
  return ex;
}

// Every sequence of an epoch (batch size = sequences), sorted, as (tokens, targets) rows.
std::set<std::pair<std::vector<int64_t>, std::vector<int64_t>>> epoch_rows(DataLoader& loader, int64_t* num_targets) {
  const Batch batch = loader.next();
  *num_targets = batch.num_targets;
  std::set<std::pair<std::vector<int64_t>, std::vector<int64_t>>> rows;
  for (int64_t b = 0; b < loader.batch_size(); ++b) rows.emplace(row(batch.tokens, b), row(batch.targets, b));
  return rows;
}

}  // namespace

TEST_CASE("packing: greedy in file order, an example never split, long ones truncated, padding ignored") {
  const std::vector<Example> examples{example(0, 3), example(1, 4), example(2, 2), example(3, 8)};
  DataLoader loader = DataLoader::from_examples(examples, 6, 3, 11, /*pack=*/true, /*pad_id=*/2);
  CHECK(loader.sequences_per_epoch() == 3);
  int64_t num_targets = 0;
  const auto rows = epoch_rows(loader, &num_targets);
  const int64_t I = kIgnoreIndex;
  CHECK(rows == std::set<std::pair<std::vector<int64_t>, std::vector<int64_t>>>{
                    {{1, 2, 3, 2, 2, 2}, {2, 3, I, I, I, I}},
                    {{11, 12, 13, 14, 21, 22}, {12, 13, 14, I, 22, I}},
                    {{31, 32, 33, 34, 35, 36}, {32, 33, 34, 35, 36, 37}}});
  CHECK(num_targets == 2 + 4 + 6);
}

TEST_CASE("without packing: one example per sequence, padded or truncated") {
  const std::vector<Example> examples{example(0, 3), example(1, 7)};
  DataLoader loader = DataLoader::from_examples(examples, 5, 2, 3, /*pack=*/false);
  int64_t num_targets = 0;
  const int64_t I = kIgnoreIndex;
  CHECK(epoch_rows(loader, &num_targets) ==
        std::set<std::pair<std::vector<int64_t>, std::vector<int64_t>>>{{{1, 2, 3, 0, 0}, {2, 3, I, I, I}},
                                                                        {{11, 12, 13, 14, 15}, {12, 13, 14, 15, 16}}});
  CHECK(num_targets == 7);
  CHECK(contains(error_of([] { DataLoader::from_examples({}, 5, 1, 0); }), "0 packed examples make 0 sequences"));
  Example broken = example(0, 3);
  broken.labels.pop_back();
  CHECK(
      contains(error_of([&] { DataLoader::from_examples({broken}, 5, 1, 0); }), "example 0 has 3 tokens but 2 labels"));
}
