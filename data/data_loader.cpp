#include "data/data_loader.h"

#include <algorithm>
#include <functional>
#include <numeric>
#include <string>

#include "engine/check.h"
#include "engine/numerics/philox.h"

namespace qtune::data {

namespace {

// The sequences of an epoch, however stored.
struct Sequences {
  int64_t count = 0;
  // Writes sequence `index` (< count): seq_len tokens and seq_len targets.
  std::function<void(int64_t index, int64_t* tokens, int64_t* targets)> fill;
  std::string what;  // the data, for messages: "a token stream of 1000 tokens"
};

// A token stream windows are cut from: its length and a reader of tokens [begin, begin + n).
struct Stream {
  int64_t length = 0;
  std::function<void(int64_t begin, int64_t n, int32_t* out)> read;
};

void check_shape(int64_t seq_len, int64_t batch_size) {
  QTUNE_CHECK(seq_len > 0 && batch_size > 0, "DataLoader: seq_len and batch_size must be positive, got seq_len ",
              seq_len, " and batch_size ", batch_size);
}

// Window w of a stream holds tokens [w * seq_len, (w + 1) * seq_len + 1); windows are numbered through the
// streams in order.
Sequences windows_of(std::vector<Stream> streams, int64_t seq_len) {
  std::vector<int64_t> first_window{0};  // first_window[s]: the number of windows before stream s
  for (const Stream& s : streams)
    first_window.push_back(first_window.back() + std::max<int64_t>(0, (s.length - 1) / seq_len));
  Sequences sequences;
  sequences.count = first_window.back();
  sequences.fill = [streams = std::move(streams), first_window, seq_len](int64_t index, int64_t* tokens,
                                                                         int64_t* targets) {
    const auto s = static_cast<size_t>(std::upper_bound(first_window.begin(), first_window.end(), index) -
                                       first_window.begin() - 1);
    std::vector<int32_t> window(static_cast<size_t>(seq_len + 1));
    streams[s].read((index - first_window[s]) * seq_len, seq_len + 1, window.data());
    std::copy(window.begin(), window.end() - 1, tokens);
    std::copy(window.begin() + 1, window.end(), targets);
  };
  return sequences;
}

// Fisher-Yates over [0, n), the swap partner of slot i drawn from Philox4x32-10 (key = seed, counter =
// (i, epoch)) as floor(u64 * (i + 1) / 2^64): integer arithmetic only, so every platform and standard
// library gets the same order (std::shuffle and std::uniform_int_distribution do not promise that).
std::vector<int64_t> permutation(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  const auto e = static_cast<uint64_t>(epoch);
  for (int64_t i = n - 1; i > 0; --i) {
    const auto u = static_cast<uint64_t>(i);
    const numerics::Philox4 r = numerics::philox4x32_10({{static_cast<uint32_t>(u), static_cast<uint32_t>(u >> 32),
                                                          static_cast<uint32_t>(e), static_cast<uint32_t>(e >> 32)}},
                                                        static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
    const uint64_t bits = static_cast<uint64_t>(r.v[0]) << 32 | r.v[1];
    const auto j = static_cast<int64_t>((static_cast<unsigned __int128>(bits) * (u + 1)) >> 64);
    std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(j)]);
  }
  return order;
}

// Examples laid out as sequences of seq_len: tokens and labels, padded.
struct Packed {
  std::vector<int32_t> tokens, labels;
  int64_t count = 0;
  void open_sequence(int64_t seq_len, int32_t pad_id) {
    tokens.resize(tokens.size() + static_cast<size_t>(seq_len), pad_id);
    labels.resize(labels.size() + static_cast<size_t>(seq_len), kIgnoreIndex);
    ++count;
  }
};

}  // namespace

struct DataLoader::Source : Sequences {
  explicit Source(Sequences sequences) : Sequences(std::move(sequences)) {}
};

DataLoader::DataLoader(std::shared_ptr<const Source> source, int64_t seq_len, int64_t batch_size, uint64_t seed)
    : source_(std::move(source)), seq_len_(seq_len), batch_size_(batch_size), seed_(seed) {
  QTUNE_CHECK(source_->count >= batch_size_, "DataLoader: ", source_->what, " make ", source_->count,
              " sequences of seq_len ", seq_len_, ", fewer than batch_size ", batch_size_,
              " (use more data, or a smaller seq_len or batch_size)");
}

DataLoader DataLoader::from_tokens(std::vector<int32_t> stream, int64_t seq_len, int64_t batch_size, uint64_t seed) {
  check_shape(seq_len, batch_size);
  const auto length = static_cast<int64_t>(stream.size());
  QTUNE_CHECK(length >= seq_len + 1, "DataLoader: a token stream of ", length,
              " tokens is shorter than one window of seq_len + 1 = ", seq_len + 1, " tokens");
  auto tokens = std::make_shared<const std::vector<int32_t>>(std::move(stream));
  std::vector<Stream> streams{
      {length, [tokens](int64_t begin, int64_t n, int32_t* out) { std::copy_n(tokens->begin() + begin, n, out); }}};
  Sequences sequences = windows_of(std::move(streams), seq_len);
  sequences.what = "a token stream of " + std::to_string(length) + " tokens";
  return DataLoader(std::make_shared<Source>(std::move(sequences)), seq_len, batch_size, seed);
}

DataLoader DataLoader::from_shards(std::vector<TokenShard> shards, int64_t seq_len, int64_t batch_size, uint64_t seed) {
  check_shape(seq_len, batch_size);
  QTUNE_CHECK(!shards.empty(), "DataLoader: no token shards given");
  std::vector<Stream> streams;
  std::string sizes;
  for (const TokenShard& shard : shards) {
    shard.validate();
    streams.push_back({shard.size(), [shard](int64_t begin, int64_t n, int32_t* out) { shard.read(begin, n, out); }});
    sizes += (sizes.empty() ? "" : ", ") + shard.path() + " (" + std::to_string(shard.size()) + " tokens)";
  }
  Sequences sequences = windows_of(std::move(streams), seq_len);
  sequences.what = "token shards " + sizes;
  return DataLoader(std::make_shared<Source>(std::move(sequences)), seq_len, batch_size, seed);
}

DataLoader DataLoader::from_examples(std::vector<Example> examples, int64_t seq_len, int64_t batch_size, uint64_t seed,
                                     bool pack, int32_t pad_id) {
  check_shape(seq_len, batch_size);
  auto packed = std::make_shared<Packed>();
  int64_t used = seq_len;  // tokens of the open sequence; none is open yet
  for (size_t e = 0; e < examples.size(); ++e) {
    const Example& ex = examples[e];
    QTUNE_CHECK(ex.tokens.size() == ex.labels.size(), "DataLoader: example ", e, " has ", ex.tokens.size(),
                " tokens but ", ex.labels.size(), " labels");
    const int64_t n = std::min<int64_t>(static_cast<int64_t>(ex.tokens.size()), seq_len);
    if (n == 0) continue;
    if (!pack || used + n > seq_len) {
      packed->open_sequence(seq_len, pad_id);
      used = 0;
    }
    const size_t at = static_cast<size_t>((packed->count - 1) * seq_len + used);
    std::copy_n(ex.tokens.begin(), n, packed->tokens.begin() + static_cast<ptrdiff_t>(at));
    std::copy_n(ex.labels.begin(), n, packed->labels.begin() + static_cast<ptrdiff_t>(at));
    used += n;
  }
  Sequences sequences;
  sequences.count = packed->count;
  sequences.what = std::to_string(examples.size()) + (pack ? " packed" : "") + " examples";
  sequences.fill = [packed, seq_len](int64_t index, int64_t* tokens, int64_t* targets) {
    const auto at = static_cast<ptrdiff_t>(index * seq_len);
    std::copy_n(packed->tokens.begin() + at, seq_len, tokens);
    std::copy_n(packed->labels.begin() + at, seq_len, targets);
  };
  return DataLoader(std::make_shared<Source>(std::move(sequences)), seq_len, batch_size, seed);
}

int64_t DataLoader::sequences_per_epoch() const { return source_->count; }

int64_t DataLoader::batches_per_epoch() const { return source_->count / batch_size_; }

void DataLoader::set_position(const DataPosition& position) {
  QTUNE_CHECK(position.epoch >= 0 && position.sequence >= 0 && position.sequence <= source_->count,
              "DataLoader: position (epoch ", position.epoch, ", sequence ", position.sequence,
              ") is out of range for this data (", source_->count,
              " sequences per epoch); was the checkpoint made with other data or seq_len?");
  position_ = position;
}

Batch DataLoader::next() {
  if (position_.sequence + batch_size_ > source_->count) position_ = {position_.epoch + 1, 0};
  if (order_epoch_ != position_.epoch) {
    order_ = permutation(source_->count, seed_, position_.epoch);
    order_epoch_ = position_.epoch;
  }
  std::vector<int64_t> tokens(static_cast<size_t>(batch_size_ * seq_len_));
  std::vector<int64_t> targets(tokens.size());
  for (int64_t b = 0; b < batch_size_; ++b) {
    const auto at = static_cast<size_t>(b * seq_len_);
    source_->fill(order_[static_cast<size_t>(position_.sequence + b)], tokens.data() + at, targets.data() + at);
  }
  position_.sequence += batch_size_;
  Batch batch;
  batch.num_targets = std::count_if(targets.begin(), targets.end(), [](int64_t t) { return t != kIgnoreIndex; });
  batch.tokens = Tensor::from_vector(tokens, {batch_size_, seq_len_});
  batch.targets = Tensor::from_vector(targets, {batch_size_, seq_len_});
  return batch;
}

}  // namespace qtune::data
