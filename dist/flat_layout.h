#pragma once
// How one transformer block's tensors are sharded across ranks (docs/distributed.md, "Flat shards"): each
// segment (a float parameter, NF4 codes, int8 scalers, f32 factors...) is cut into `ranks` equal pieces of
// whole units, the last ones padded, and a rank's shard is its piece of every segment, one after another.
// Every shard has the same size, so one all_gather of the shards rebuilds the whole block, and a unit
// (an NF4 double-quantization group) never straddles two ranks, so each shard decodes on its own.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/dtype.h"

namespace qtune::dist {

struct Segment {
  std::string name;
  DType dtype = DType::f32;
  int64_t count = 0;  // elements
  int64_t unit = 1;   // elements that stay on one rank together; the last unit may be partial
};

// Elements [begin, end) of a segment.
struct Range {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
  bool operator==(const Range&) const = default;
};

class FlatLayout {
 public:
  // Throws naming the segment for a negative count or a unit below 1, and for ranks below 1.
  FlatLayout(std::vector<Segment> segments, int ranks);

  int ranks() const { return ranks_; }
  const std::vector<Segment>& segments() const { return segments_; }
  // Elements of segment s in every rank's piece: whole units, ceil(units / ranks) of them.
  int64_t piece_count(size_t s) const { return piece_counts_[s]; }
  // Where segment s's piece starts in a shard (bytes, 16-byte aligned), and the shard's size.
  int64_t piece_offset(size_t s) const { return piece_offsets_[s]; }
  int64_t shard_bytes() const { return shard_bytes_; }
  // What rank r holds of segment s: at most piece_count(s) elements, empty past the segment's end.
  Range held(int rank, size_t s) const;

  // Fills rank r's shard (shard_bytes() bytes) from the whole segments, zeroing the padding.
  void pack_shard(int rank, const std::vector<const void*>& segments, void* shard) const;
  // The same, each piece written by fill(s, held(rank, s), piece) in segment order, also for an empty range.
  using PieceFill = std::function<void(size_t s, Range held, void* piece)>;
  void fill_shard(int rank, const PieceFill& fill, void* shard) const;
  // Rebuilds the whole segments from all ranks' shards laid end to end (what all_gather of the shards gives).
  void unpack_gathered(const void* gathered, const std::vector<void*>& segments) const;

 private:
  std::vector<Segment> segments_;
  int ranks_;
  std::vector<int64_t> piece_counts_, piece_offsets_;
  int64_t shard_bytes_ = 0;
};

}  // namespace qtune::dist
