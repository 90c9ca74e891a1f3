#include "dist/flat_layout.h"

#include <algorithm>
#include <cstring>

#include "engine/check.h"

namespace qtune::dist {
namespace {

// Pieces start on 16-byte boundaries, so every dtype's piece is aligned for vector loads.
constexpr int64_t kPieceAlignment = 16;

int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }

}  // namespace

FlatLayout::FlatLayout(std::vector<Segment> segments, int ranks) : segments_(std::move(segments)), ranks_(ranks) {
  QTUNE_CHECK(ranks >= 1, "flat layout: ranks must be >= 1, got ", ranks);
  for (const Segment& s : segments_) {
    QTUNE_CHECK(s.count >= 0, "flat layout: segment ", s.name, " has ", s.count, " elements");
    QTUNE_CHECK(s.unit >= 1, "flat layout: segment ", s.name, " has unit ", s.unit, " (elements kept together, >= 1)");
    const int64_t units = (s.count + s.unit - 1) / s.unit;
    const int64_t piece = (units + ranks - 1) / ranks * s.unit;
    piece_counts_.push_back(piece);
    piece_offsets_.push_back(shard_bytes_);
    shard_bytes_ = round_up(shard_bytes_ + piece * static_cast<int64_t>(dtype_size(s.dtype)), kPieceAlignment);
  }
}

Range FlatLayout::held(int rank, size_t s) const {
  QTUNE_CHECK(rank >= 0 && rank < ranks_, "flat layout: rank ", rank, " is not one of ", ranks_);
  QTUNE_CHECK(s < segments_.size(), "flat layout: segment ", s, " of ", segments_.size());
  const int64_t count = segments_[s].count;
  const int64_t begin = std::min(count, piece_counts_[s] * rank);
  return Range{begin, std::min(count, begin + piece_counts_[s])};
}

void FlatLayout::pack_shard(int rank, const std::vector<const void*>& segments, void* shard) const {
  QTUNE_CHECK(segments.size() == segments_.size(), "flat layout: ", segments.size(), " segment pointers for ",
              segments_.size(), " segments");
  fill_shard(
      rank,
      [&](size_t s, Range r, void* piece) {
        const auto element = static_cast<int64_t>(dtype_size(segments_[s].dtype));
        if (r.size() > 0)
          std::memcpy(piece, static_cast<const unsigned char*>(segments[s]) + r.begin * element,
                      static_cast<size_t>(r.size() * element));
      },
      shard);
}

void FlatLayout::fill_shard(int rank, const PieceFill& fill, void* shard) const {
  auto* out = static_cast<unsigned char*>(shard);
  std::memset(out, 0, static_cast<size_t>(shard_bytes_));
  for (size_t s = 0; s < segments_.size(); ++s) fill(s, held(rank, s), out + piece_offsets_[s]);
}

void FlatLayout::unpack_gathered(const void* gathered, const std::vector<void*>& segments) const {
  QTUNE_CHECK(segments.size() == segments_.size(), "flat layout: ", segments.size(), " segment pointers for ",
              segments_.size(), " segments");
  const auto* in = static_cast<const unsigned char*>(gathered);
  for (int rank = 0; rank < ranks_; ++rank) {
    const unsigned char* shard = in + static_cast<int64_t>(rank) * shard_bytes_;
    for (size_t s = 0; s < segments_.size(); ++s) {
      const Range r = held(rank, s);
      const auto element = static_cast<int64_t>(dtype_size(segments_[s].dtype));
      if (r.size() > 0)
        std::memcpy(static_cast<unsigned char*>(segments[s]) + r.begin * element, shard + piece_offsets_[s],
                    static_cast<size_t>(r.size() * element));
    }
  }
}

}  // namespace qtune::dist
