#pragma once
// Batches for training: fixed-length [batch, seq_len] token/target windows drawn in a deterministic
// shuffled order, with a position that a checkpoint saves and a resumed run restores.
#include <cstdint>
#include <memory>
#include <vector>

#include "data/instruction_data.h"
#include "data/token_shards.h"
#include "engine/tensor.h"

namespace qtune::data {

struct Batch {
  Tensor tokens;            // [B, T] i64
  Tensor targets;           // [B, T] i64, kIgnoreIndex where no loss is taken
  int64_t num_targets = 0;  // entries of targets that are not kIgnoreIndex
};

// Where the loader is: which epoch, and how many sequences of that epoch's order were consumed.
struct DataPosition {
  int64_t epoch = 0;
  int64_t sequence = 0;
  bool operator==(const DataPosition&) const = default;
};

class DataLoader {
 public:
  // Pretraining: a token stream (concatenated documents with their BOS/EOS) cut into windows of seq_len + 1
  // tokens that start every seq_len tokens (tokens = window[:-1], targets = window[1:]; consecutive windows
  // share one token, so every token but the first is a target exactly once); a trailing partial window is
  // dropped. An Error when the stream is shorter than one window or yields fewer than batch_size windows.
  static DataLoader from_tokens(std::vector<int32_t> stream, int64_t seq_len, int64_t batch_size, uint64_t seed);
  // Each shard is its own stream, windowed as above (a window never spans two shards; a shard shorter
  // than one window contributes none). Every shard is validate()d first: a token outside the vocabulary
  // is an Error here, not an out-of-range embedding lookup later.
  static DataLoader from_shards(std::vector<TokenShard> shards, int64_t seq_len, int64_t batch_size, uint64_t seed);
  // Instruction data. pack=true: examples (in file order; the packed sequences are what gets shuffled) are
  // greedily concatenated into seq_len sequences, an example never split across two sequences unless longer than
  // seq_len (then truncated); the rest of a sequence is padded with targets kIgnoreIndex and tokens pad_id
  // (callers pass the EOS id, or 0). pack=false: one example per sequence, padded / truncated to seq_len.
  // Packed examples see one another through causal attention; no loss crosses them, since labels are
  // per example. An Error when there are fewer sequences than batch_size.
  static DataLoader from_examples(std::vector<Example> examples, int64_t seq_len, int64_t batch_size, uint64_t seed,
                                  bool pack = true, int32_t pad_id = 0);

  // The next batch; after the last full batch of an epoch, the next epoch begins in a new order
  // (a permutation drawn from (seed, epoch) with qtune's own generator, identical on every platform).
  Batch next();
  DataPosition position() const { return position_; }
  void set_position(const DataPosition& position);  // an Error when out of range for this data
  int64_t sequences_per_epoch() const;
  int64_t batches_per_epoch() const;  // sequences_per_epoch / batch_size (a partial batch is dropped)
  int64_t seq_len() const { return seq_len_; }
  int64_t batch_size() const { return batch_size_; }

 private:
  struct Source;  // the sequences, however stored
  DataLoader(std::shared_ptr<const Source> source, int64_t seq_len, int64_t batch_size, uint64_t seed);
  std::shared_ptr<const Source> source_;
  int64_t seq_len_, batch_size_;
  uint64_t seed_;
  DataPosition position_;
  std::vector<int64_t> order_;  // the permutation of sequence indices of epoch order_epoch_
  int64_t order_epoch_ = -1;
};

}  // namespace qtune::data
