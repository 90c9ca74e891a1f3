// dist::FlatLayout, the cut of a block's tensors into equal per-rank shards: at every world size from 1 to 5
// the pieces partition each segment on whole units (an NF4 block's codes, scalers and factor stay on one
// rank together), every shard has the same 16-byte aligned size with zeroed padding, and unpacking the
// shards laid end to end (what all_gather gives) rebuilds every segment byte for byte.
#include <doctest/doctest.h>

#include <cstring>
#include <numeric>
#include <vector>

#include "dist/flat_layout.h"
#include "engine/check.h"

using namespace qtune;
using namespace qtune::dist;

namespace {

// A block with a float weight, an NF4 weight (codes: 2 per byte in units of one double-quantization group
// of 16384 values; int8 scalers: 256 per group; f32 factors: 1 per group; a partial last group), a bf16
// norm and an empty tensor.
std::vector<Segment> block_segments() {
  const int64_t groups = 3;
  return {{"attn.q_proj.weight", DType::f32, 1000, 1},
          {"mlp.down_proj.codes", DType::u8, groups * 8192 + 96, 8192},
          {"mlp.down_proj.scalers", DType::i8, groups * 256 + 3, 256},
          {"mlp.down_proj.factors", DType::f32, groups + 1, 1},
          {"norm.weight", DType::bf16, 7, 1},
          {"empty", DType::f32, 0, 1}};
}

std::vector<std::vector<unsigned char>> filled(const std::vector<Segment>& segments) {
  std::vector<std::vector<unsigned char>> data;
  unsigned char next = 1;
  for (const Segment& s : segments) {
    data.emplace_back(static_cast<size_t>(s.count) * dtype_size(s.dtype));
    for (unsigned char& b : data.back()) b = next = static_cast<unsigned char>(next * 13 + 7);
  }
  return data;
}

}  // namespace

TEST_CASE("flat shards partition every segment on whole units and rebuild it byte for byte, at 1 to 5 ranks") {
  const std::vector<Segment> segments = block_segments();
  const auto data = filled(segments);
  for (int ranks = 1; ranks <= 5; ++ranks) {
    CAPTURE(ranks);
    const FlatLayout layout(segments, ranks);
    CHECK(layout.shard_bytes() % 16 == 0);
    int64_t payload = 0;
    for (size_t s = 0; s < segments.size(); ++s) {
      CAPTURE(segments[s].name);
      CHECK(layout.piece_offset(s) % 16 == 0);
      CHECK(layout.piece_count(s) % segments[s].unit == 0);
      int64_t covered = 0;
      for (int r = 0; r < ranks; ++r) {
        const Range held = layout.held(r, s);
        CHECK(held.begin == covered);  // in rank order, no gap, no overlap
        CHECK(held.size() <= layout.piece_count(s));
        CHECK((held.begin % segments[s].unit == 0 || held.begin == segments[s].count));
        covered = held.end;
      }
      CHECK(covered == segments[s].count);
      payload += segments[s].count * static_cast<int64_t>(dtype_size(segments[s].dtype));
    }
    // Padding: under one unit per rank and segment, plus the alignment.
    int64_t bound = payload;
    for (const Segment& s : segments) bound += (ranks * s.unit + 16) * static_cast<int64_t>(dtype_size(s.dtype)) + 16;
    CHECK(layout.shard_bytes() * ranks <= bound);
    // An NF4 group's codes, scalers and factor are held by the same rank.
    for (int r = 0; r < ranks; ++r) {
      const Range codes = layout.held(r, 1), scalers = layout.held(r, 2), factors = layout.held(r, 3);
      CHECK((codes.size() == 0) == (factors.size() == 0));  // past the last group: nothing of it
      CHECK((scalers.size() == 0) == (factors.size() == 0));
      if (factors.size() > 0) {
        CHECK(codes.begin / 8192 == factors.begin);
        CHECK(scalers.begin / 256 == factors.begin);
      }
    }

    std::vector<const void*> in;
    for (const auto& d : data) in.push_back(d.data());
    std::vector<unsigned char> gathered(static_cast<size_t>(layout.shard_bytes() * ranks), 0xEE);
    for (int r = 0; r < ranks; ++r) layout.pack_shard(r, in, gathered.data() + r * layout.shard_bytes());
    // Padding is zero: a shard's bytes past each held range are 0.
    for (int r = 0; r < ranks; ++r)
      for (size_t s = 0; s < segments.size(); ++s) {
        const auto element = static_cast<int64_t>(dtype_size(segments[s].dtype));
        const unsigned char* piece = gathered.data() + r * layout.shard_bytes() + layout.piece_offset(s);
        for (int64_t b = layout.held(r, s).size() * element; b < layout.piece_count(s) * element; ++b)
          CHECK(piece[b] == 0);
      }
    std::vector<std::vector<unsigned char>> out;
    std::vector<void*> out_ptrs;
    for (const auto& d : data) out.emplace_back(d.size(), 0);
    for (auto& o : out) out_ptrs.push_back(o.data());
    layout.unpack_gathered(gathered.data(), out_ptrs);
    CHECK(out == data);
  }
}

TEST_CASE("a flat layout refuses what cannot be sharded, naming the segment") {
  CHECK_THROWS_WITH_AS(FlatLayout({{"w", DType::f32, 8, 0}}, 2), doctest::Contains("segment w has unit 0"), Error);
  CHECK_THROWS_WITH_AS(FlatLayout({{"w", DType::f32, -1, 1}}, 2), doctest::Contains("segment w has -1 elements"),
                       Error);
  CHECK_THROWS_WITH_AS(FlatLayout({}, 0), doctest::Contains("ranks must be >= 1"), Error);
  const FlatLayout layout({{"w", DType::f32, 8, 1}}, 2);
  CHECK_THROWS_WITH_AS(layout.held(2, 0), doctest::Contains("rank 2 is not one of 2"), Error);
  std::vector<float> shard(8);
  CHECK_THROWS_WITH_AS(layout.pack_shard(0, {}, shard.data()), doctest::Contains("0 segment pointers for 1"), Error);
}
