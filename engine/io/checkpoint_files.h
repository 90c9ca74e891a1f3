#pragma once
// A Hugging Face checkpoint's weight files: either one `model.safetensors`, or shards
// `model-00001-of-0000N.safetensors` listed by `model.safetensors.index.json`
// ({"metadata": {"total_size": bytes}, "weight_map": {tensor name: shard file}}).
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/io/safetensors.h"

namespace qtune::io {

// Opens every shard of the checkpoint in `dir` (validating each, and that the index names exactly
// the tensors the shards hold, no tensor in two shards) and looks tensors up by name.
class CheckpointFiles {
 public:
  static CheckpointFiles open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  std::vector<std::string> names() const;  // sorted
  bool contains(std::string_view name) const;
  const TensorEntry& entry(std::string_view name) const;  // throws naming dir and tensor
  const SafetensorsFile& file_of(std::string_view name) const;
  Tensor tensor(std::string_view name) const;  // SafetensorsFile::tensor of the right shard
  void release(std::string_view name) const;   // SafetensorsFile::release of the right shard
  const std::vector<SafetensorsFile>& files() const { return files_; }
  uint64_t total_bytes() const;

 private:
  std::string dir_;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, size_t, std::less<>> where_;  // tensor name -> index in files_
};

struct SaveCheckpointOptions {
  // Largest shard, in bytes of tensor data; 0 = one file. A tensor bigger than the limit gets a shard
  // of its own. With one shard the file is `model.safetensors` and no index is written.
  uint64_t max_shard_bytes = 0;
  std::map<std::string, std::string> metadata;  // written into every shard's __metadata__
};

// Writes tensors (in the given order) into `dir` (created if missing), each file atomically, the index
// last. Stale shards or index from an earlier save with a different layout are removed.
void save_checkpoint_files(const std::string& dir, const std::vector<std::pair<std::string, Tensor>>& tensors,
                           const SaveCheckpointOptions& options = {});
// The same from tensors produced one at a time as the writer reaches them (a model larger than memory, a
// sharded model gathered tensor by tensor).
void save_checkpoint_files(const std::string& dir, const std::vector<LazyTensor>& tensors,
                           const SaveCheckpointOptions& options = {});

}  // namespace qtune::io
